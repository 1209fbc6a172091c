package testenv

import "testing"

func TestE2ECountsTyposAsSet(t *testing.T) {
	for _, tc := range []struct {
		value string
		want  bool
	}{
		{"", false},
		{"0", false},
		{"1", true},
		{"TRUE", true},
		{"ture", true},
	} {
		t.Setenv(E2EEnv, tc.value)
		if got := E2E(); got != tc.want {
			t.Errorf("%s=%q: E2E() = %v, want %v", E2EEnv, tc.value, got, tc.want)
		}
	}
}
