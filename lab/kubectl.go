package lab

import (
	"bytes"
	"context"
	"fmt"
)

// kubectl runs the lab's kubectl as cluster admin, with stdin.
func (c Config) kubectl(ctx context.Context, stdin []byte, args ...string) error {
	cmd := childCommand(ctx, c.bin("kubectl"), append([]string{"--kubeconfig", c.AdminKubeconfig()}, args...)...)
	cmd.Stdin = bytes.NewReader(stdin)
	out, err := runChild(cmd)
	if err != nil {
		return fmt.Errorf("kubectl %v: %v: %s", args, err, out)
	}
	return nil
}
