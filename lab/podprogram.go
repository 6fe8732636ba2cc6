package lab

import (
	"context"
	"fmt"
	"os"

	"github.com/berthnet/berth/lab/echo"
)

// Without real nodes (--kubelet=false) no container image runs: the pod
// runner starts `berthctl lab pod-program` with the program a pod's echo
// image names (lab/echo, as the images run it) inside the pod's network
// namespace.
var podPrograms = map[string]string{
	"berth.dev/lab/http-echo": "http",
	"berth.dev/lab/tcp-echo":  "tcp",
	"berth.dev/lab/udp-echo":  "udp",
	// NetworkPolicy truth tables: TCP and UDP echo on every port.
	"berth.dev/lab/multi-echo": "multi",
}

// KnownImage reports whether image is one of the lab's built-in programs.
func KnownImage(image string) bool {
	_, ok := podPrograms[imageName(image)]
	return ok
}

func imageName(image string) string {
	for i := len(image) - 1; i >= 0; i-- {
		if image[i] == ':' {
			return image[:i]
		}
		if image[i] == '/' {
			break
		}
	}
	return image
}

// RunPodProgram runs the program an image names, on port, until ctx ends,
// as the pod's identity in the environment says (lab/echo).
func RunPodProgram(ctx context.Context, image string, port int) error {
	name, ok := podPrograms[imageName(image)]
	if !ok {
		return fmt.Errorf("image %q is not one of the lab's built-in programs (berth.dev/lab/http-echo, tcp-echo, udp-echo, multi-echo)", image)
	}
	return echo.Programs[name](ctx, port, echo.FromEnv(os.Getenv))
}

// EchoReply is what the HTTP echo server answers.
type EchoReply = echo.Reply
