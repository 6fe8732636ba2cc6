package netnstest

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthnet/berth/lab/netns"
)

// Iperf runs an iperf3 server (Debian's) bound to bind in srv and a
// 3-second TCP client to target in cli, and returns the throughput the
// server received, in bit/s. The client is retried until the server
// listens and a run completes: with -J, iperf3 may exit 0 having only
// printed {"error": "unable to connect to server"}, which is no run of
// 0 bit/s. It fails the test after 20 seconds without a run.
func Iperf(tb testing.TB, srv, cli *netns.Namespace, bind, target string) float64 {
	tb.Helper()
	server := netns.EnterCommand(filepath.Join(netns.Dir, srv.Name), "iperf3", "-s", "-1", "-B", bind)
	if err := server.Start(); err != nil {
		tb.Fatal(err)
	}
	// The server ends after its one client; if that client never got
	// through, or left a session half open, the server would wait forever:
	// it gets a few seconds, then it is stopped.
	defer func() {
		done := make(chan error, 1)
		go func() { done <- server.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = server.Process.Kill()
			<-done
		}
	}()
	var (
		out []byte
		err error
		res struct {
			Error string `json:"error"`
			End   struct {
				SumReceived struct {
					BitsPerSecond float64 `json:"bits_per_second"`
				} `json:"sum_received"`
			} `json:"end"`
		}
	)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		out, err = exec.Command("nsenter", "--net="+cli.Path(), "--", "iperf3", "-c", target, "-t", "3", "-J", "--connect-timeout", "1000").Output()
		if err == nil {
			res.Error = ""
			err = json.Unmarshal(out, &res)
		}
		if err == nil && res.Error == "" && res.End.SumReceived.BitsPerSecond > 0 {
			return res.End.SumReceived.BitsPerSecond
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("iperf3 client to %s: %v %s\n%s", target, err, res.Error, out)
	return 0
}
