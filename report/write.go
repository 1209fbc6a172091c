package report

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"strings"
	"time"
)

//go:embed report.html.tmpl
var htmlSource string

var page = template.Must(template.New("report").Funcs(template.FuncMap{
	"join":  strings.Join,
	"stamp": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
	"yesno": func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	},
	"caps": func(c []string) string {
		if len(c) == 0 {
			return "none"
		}
		return strings.Join(c, ",")
	},
	"position": func(p int) string {
		switch p {
		case -1:
			return "unknown"
		case 0:
			return "head of the chain"
		}
		return fmt.Sprintf("%d programs run before it", p)
	},
}).Parse(htmlSource))

// WriteHTML writes the report as one self-contained HTML page.
func (r *Report) WriteHTML(w io.Writer) error {
	return page.Execute(w, r)
}

// WriteJSON writes the report as JSON (schema.json).
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
