package e2e

import (
	"regexp"
	"testing"
	"time"

	"github.com/berthnet/berth/test/labtest"
)

// The lab demo (make run) applies the seed policy and shows the frontend
// reaching web on TCP 80 and another pod refused.
func TestNetworkPolicyDemo(t *testing.T) {
	l, ctx := labtest.Start(t, 5*time.Minute)
	out, err := l.Berthctl(ctx, "lab", "demo", "--name", l.Name)
	if err != nil {
		t.Fatalf("lab demo: %v\n%s", err, out)
	}
	for _, want := range []string{`NetworkPolicy berth-demo/web-allow-frontend`, `frontend .* → web .*:80 +allowed, answered by web`, `other .* → web .*:80 +refused`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("demo:\n%s", out)
}
