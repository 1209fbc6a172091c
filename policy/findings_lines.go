package policy

import (
	"bytes"
	"crypto/sha256"
	"io"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// fieldLines finds the line of a field path in the files of a loaded set.
// A Policy keeps only the lines of its document, name and rules; a finding
// about an annotation or a port entry should still point at its own line.
// A file is read again only when a finding needs it, and trusted only when
// its hash is still the one loaded; otherwise the caller's fallback line
// stands.
type fieldLines struct {
	hashes map[string][sha256.Size]byte
	docs   map[string][]*yaml.Node // root node per document; nil for an empty one
}

func newFieldLines(files []File) *fieldLines {
	l := &fieldLines{hashes: make(map[string][sha256.Size]byte), docs: make(map[string][]*yaml.Node)}
	for _, f := range files {
		l.hashes[f.Path] = f.SHA256
	}
	return l
}

// line returns the line of field in document doc of file, or fallback when
// it cannot be found.
func (l *fieldLines) line(file string, doc int, field string, fallback int) int {
	docs, ok := l.docs[file]
	if !ok {
		docs = l.read(file)
		l.docs[file] = docs
	}
	if doc < 1 || doc > len(docs) || docs[doc-1] == nil {
		return fallback
	}
	if n := lookupField(docs[doc-1], field); n != nil {
		return n.Line
	}
	return fallback
}

func (l *fieldLines) read(file string) []*yaml.Node {
	want, known := l.hashes[file]
	data, err := readFile(file)
	if !known || err != nil || sha256.Sum256(data) != want {
		return nil
	}
	var docs []*yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		err := decode(dec, &n)
		if err == io.EOF || err != nil {
			return docs
		}
		var root *yaml.Node
		if len(n.Content) > 0 && !isNull(n.Content[0]) {
			root = n.Content[0]
		}
		docs = append(docs, root)
	}
}

// lookupField follows a field path such as spec.ingress[0].ports[1] from a
// document's root and returns the node a person would look at: the key of
// a mapping field, the item of a list element. It handles the plain keys
// the checks name, and returns nil for anything else.
func lookupField(root *yaml.Node, field string) *yaml.Node {
	if field == "" || strings.Contains(field, `"`) {
		return nil
	}
	cur, at := root, root
	for _, part := range strings.Split(field, ".") {
		key, rest, _ := strings.Cut(part, "[")
		if key == "" || cur.Kind != yaml.MappingNode {
			return nil
		}
		var val *yaml.Node
		for i := 0; i+1 < len(cur.Content); i += 2 {
			if cur.Content[i].Value == key {
				at, val = cur.Content[i], cur.Content[i+1]
				break
			}
		}
		if val == nil {
			return nil
		}
		cur = val
		for rest != "" {
			num, after, ok := strings.Cut(rest, "]")
			i, err := strconv.Atoi(num)
			if !ok || err != nil || cur.Kind != yaml.SequenceNode || i < 0 || i >= len(cur.Content) {
				return nil
			}
			cur = cur.Content[i]
			at = cur
			rest = strings.TrimPrefix(after, "[")
			if rest == after && after != "" {
				return nil
			}
		}
	}
	return at
}
