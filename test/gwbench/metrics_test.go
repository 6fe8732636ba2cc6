package gwbench

import (
	"bufio"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// stepTotals are the sums and counts of the controller's Gateway step
// histograms, by series ("step=gather", "event_to_serve").
type stepTotals map[string]struct {
	sum   float64
	count float64
}

// steps reads berth_controller_gateway_* histograms from the controller's
// metrics endpoint.
func (p *proc) steps(b *testing.B) stepTotals {
	b.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + p.metrics + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	out := stepTotals{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		name, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.HasPrefix(name, "berth_controller_gateway_") {
			continue
		}
		var series, field string
		switch {
		case strings.Contains(name, "_sum"):
			field = "sum"
		case strings.Contains(name, "_count"):
			field = "count"
		default:
			continue
		}
		series = strings.TrimPrefix(name, "berth_controller_gateway_")
		series = strings.NewReplacer("_seconds_sum", "", "_seconds_count", "").Replace(series)
		series = strings.NewReplacer("sync_step{step=", "", "\"", "", "}", "").Replace(series)
		v, err := strconv.ParseFloat(rest, 64)
		if err != nil {
			b.Fatalf("metrics line %q: %v", line, err)
		}
		t := out[series]
		if field == "sum" {
			t.sum = v
		} else {
			t.count = v
		}
		out[series] = t
	}
	if err := sc.Err(); err != nil {
		b.Fatal(err)
	}
	return out
}

// since is what was observed between before and t, as mean milliseconds
// per observation, in a line for the log.
func (t stepTotals) since(before stepTotals) string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		n := t[k].count - before[k].count
		if n <= 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %.1f (x%.0f)", k, 1000*(t[k].sum-before[k].sum)/n, n))
	}
	return strings.Join(parts, ", ")
}
