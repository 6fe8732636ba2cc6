package main

import (
	"strings"
	"testing"
)

func TestChoosePort(t *testing.T) {
	for _, c := range []struct {
		flag    int
		env     string
		want    int
		wantErr string
	}{
		{0, "", 8080, ""},
		{0, "9000", 9000, ""},
		{81, "9000", 81, ""}, // --port wins over $PORT
		{0, "http", 0, `PORT="http" is not a port number`},
		{0, "70000", 0, "port 70000 is out of 1-65535"},
		{-1, "", 0, "port -1 is out of 1-65535"},
	} {
		got, err := choosePort(c.flag, c.env)
		if c.wantErr != "" {
			if err == nil || err.Error() != c.wantErr {
				t.Errorf("choosePort(%d, %q) = %d, %v, want error %q", c.flag, c.env, got, err, c.wantErr)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("choosePort(%d, %q) = %d, %v, want %d", c.flag, c.env, got, err, c.want)
		}
	}
}

func TestRunRefuses(t *testing.T) {
	for args, want := range map[string]string{
		"":                 "usage: berth-echo http|tcp|udp|multi",
		"ftp":              `no program "ftp": choose among http, tcp, udp, multi`,
		"http --port x":    `invalid value "x" for flag -port`,
		"http extra":       `unexpected arguments ["extra"]`,
		"tcp --port 65536": "port 65536 is out of 1-65535",
	} {
		err := run(strings.Fields(args))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("berth-echo %s: %v, want %q", args, err, want)
		}
	}
}
