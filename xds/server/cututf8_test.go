package server

import (
	"testing"
	"unicode/utf8"
)

// A NACK cut to its bound keeps whole characters: "é" is two bytes and
// "€" three, so a cut that falls inside one backs up to its start.
func TestCutUTF8(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"abc", 5, "abc"},
		{"abc", 3, "abc"},
		{"abc", 2, "ab"},
		{"aé", 2, "a"},
		{"aé", 3, "aé"},
		{"a€b", 2, "a"},
		{"a€b", 3, "a"},
		{"a€b", 4, "a€"},
		{"€", 1, ""},
		{"", 0, ""},
	} {
		got := cutUTF8(tc.in, tc.n)
		if got != tc.want {
			t.Errorf("cutUTF8(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("cutUTF8(%q, %d) = %q: not valid UTF-8", tc.in, tc.n, got)
		}
	}
}
