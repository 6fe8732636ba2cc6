package kube

import (
	"fmt"
	"testing"
)

func TestParseCommunity(t *testing.T) {
	for in, want := range map[string]string{
		"65000:100":          "65000:100",
		"0:0":                "0:0",
		"65535:65535":        "65535:65535",
		"65000:1:2":          "65000:1:2",
		"4294967295:0:65536": "4294967295:0:65536",
		"007:08":             "7:8",
	} {
		std, large, err := ParseCommunity(in)
		if err != nil || communityText(std, large) != want {
			t.Errorf("ParseCommunity(%q) = %s, %v; want %s", in, communityText(std, large), err, want)
		}
	}
	for _, in := range []string{"", "65000", "65536:1", "1:65536", "-1:2", "a:b", "1:2:3:4", "4294967296:1:1", " 1:2", "0x10:1", "1::2"} {
		if _, _, err := ParseCommunity(in); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", in)
		}
	}
}

// FuzzParseCommunity: a community string from a BGPAnnouncement either
// gives an error or a standard or large community whose usual form reads
// back the same.
func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "65000:1:2", "65536:1", "1:2:3:4", "::", "0:0", "4294967295:4294967295:4294967295"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		std, large, err := ParseCommunity(s)
		if err != nil {
			return
		}
		text := communityText(std, large)
		std2, large2, err := ParseCommunity(text)
		if err != nil || communityText(std2, large2) != text || (large == nil) != (large2 == nil) {
			t.Fatalf("ParseCommunity(%q) = %s; that reads back as %s, %v", s, text, communityText(std2, large2), err)
		}
	})
}

// communityText is a community's usual form: 65000:100, or 65000:1:2 for
// a large one.
func communityText(std uint32, large *[3]uint32) string {
	if large != nil {
		return fmt.Sprintf("%d:%d:%d", large[0], large[1], large[2])
	}
	return fmt.Sprintf("%d:%d", std>>16, std&0xffff)
}
