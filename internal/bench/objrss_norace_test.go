//go:build !race && linux

package bench

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/client"
	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/node"
	"github.com/mpreg/mpreg/schema"
)

// The node processes of TestLoadObjectRSS are this test binary run again
// with rssChildEnv set to the node's id and loc, and rssURLEnv to the
// server's URL.
const (
	rssURLEnv  = "MPREG_BENCH_RSS_URL"
	rssCluster = "rss"
	rssSize    = 200 << 20
	// rssBound is how far above its baseline a node's peak RSS may go
	// while it passes a value: 2.5 times the value's size.
	rssBound = rssSize * 5 / 2
)

func init() { rssChild = runRSSChild }

// runRSSChild is a node process of TestLoadObjectRSS: it serves the data
// functions at its loc until its stdin closes.
func runRSSChild() int {
	id := os.Getenv(rssChildEnv)
	nc, err := nats.Connect(os.Getenv(rssURLEnv), nats.Name("mpreg-rss-"+id))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer nc.Close()
	cfg := node.Config{Cluster: rssCluster, NodeID: id, Locs: []string{id}}
	cfg.Gossip.DeadAfter = 30 * time.Second // a loaded machine moving 200 MiB holds heartbeats up
	n, err := node.New(nc, cfg)
	if err == nil {
		err = registerObjFuncs(n)
	}
	ctx := context.Background()
	if err == nil {
		err = n.Start(ctx)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	<-n.JetStreamKnown()
	fmt.Printf("ready %s\n", n.JetStream())
	_, _ = io.Copy(io.Discard, os.Stdin)
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_ = n.Drain(dctx)
	return 0
}

// rssNode is a node process and its stdin, whose closing stops it.
type rssNode struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

// startRSSNode runs a node process with id (and loc) id against url and
// waits until it has found JetStream.
func startRSSNode(t *testing.T, url, id string) *rssNode {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), rssChildEnv+"="+id, rssURLEnv+"="+url)
	logs := &testwait.Buffer{}
	cmd.Stderr = logs
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	n := &rssNode{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		_ = stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("node %s: %v", id, err)
			}
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("node %s did not stop: %v", id, <-done)
		}
		t.Logf("node %s stderr:\n%s", id, logs.String())
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err, "node %s: %s", id, logs.String())
	require.Equal(t, "ready available\n", line, "node %s", id)
	return n
}

// memStatus reads a process's VmRSS and VmHWM, in bytes.
func memStatus(t *testing.T, pid int) (rss, hwm int64) {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) != 3 || f[2] != "kB" {
			continue
		}
		v, err := strconv.ParseInt(f[1], 10, 64)
		require.NoError(t, err)
		switch f[0] {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	require.NotZero(t, rss)
	require.NotZero(t, hwm)
	return rss, hwm
}

// resetPeak resets a process's VmHWM to its VmRSS (Linux's clear_refs
// "5") and returns that baseline. Where clear_refs cannot be written the
// peak stays the process's since it started, which is no lower: the bound
// is then checked against a peak that may be higher than the transfer's.
func resetPeak(t *testing.T, pid int) int64 {
	t.Helper()
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		t.Logf("the peak RSS is the process's since it started: %v", err)
	}
	rss, _ := memStatus(t, pid)
	return rss
}

// TestLoadObjectRSS: transfers stream. A node process makes a 200 MiB
// value, which passes by reference through JetStream to a step on another
// node process; each one's peak RSS stays within 2.5 times the value's size
// over its RSS before the request. It holds for a value returned and taken
// as []byte (which the functions hold whole) and for one returned and read
// as a *node.Blob, each between node processes of their own. The
// consumer's digest proves the bytes arrived, and its trace that it
// fetched them once.
func TestLoadObjectRSS(t *testing.T) {
	h := sha256.New()
	_, err := io.Copy(h, &patternReader{size: rssSize})
	require.NoError(t, err)
	want := hex.EncodeToString(h.Sum(nil))

	for _, fns := range [][2]string{{ObjMake, ObjDigest}, {ObjGen, ObjSum}} {
		t.Run(fns[0]+"-"+fns[1], func(t *testing.T) {
			s := testcluster.Server(t, testcluster.WithJetStream(t.TempDir()))
			pids := map[string]int{}
			for _, id := range []string{"producer", "consumer"} {
				pids[id] = startRSSNode(t, s.ClientURL(), id).cmd.Process.Pid
			}
			c := testcluster.Client(t, s.ClientURL(), client.Config{Cluster: rssCluster, Timeout: 3 * time.Minute, DeadAfter: 30 * time.Second})
			testcluster.WaitForRoute(t, c.Table(), fns[0], []string{"producer"}, "producer")
			testcluster.WaitForRoute(t, c.Table(), fns[1], []string{"consumer"}, "consumer")

			base := map[string]int64{}
			for id, pid := range pids {
				base[id] = resetPeak(t, pid)
			}
			resp, err := c.Run(context.Background(), &schema.Request{Trace: true, Cmds: []schema.Command{
				{Name: "|v", Fun: fns[0], Args: []any{rssSize}, Locs: []string{"producer"}},
				{Name: "d", Fun: fns[1], Args: []any{"|v"}, Locs: []string{"consumer"}},
			}})
			require.NoError(t, err)
			require.Equal(t, want, resp.Results["d"])
			var fetched int64 = -1
			for _, e := range resp.Trace {
				if e.Step == "d" {
					fetched = e.FetchedBytes
				}
			}
			require.EqualValues(t, rssSize, fetched, "the consumer fetched the value once")
			for id, pid := range pids {
				_, peak := memStatus(t, pid)
				over := peak - base[id]
				t.Logf("%s: RSS %d MiB before, peak %d MiB: %d MiB over, %.2fx the value's %d MiB (bound %.1fx)",
					id, base[id]>>20, peak>>20, over>>20, float64(over)/rssSize, rssSize>>20, float64(rssBound)/rssSize)
				require.LessOrEqual(t, over, int64(rssBound), "%s's peak RSS over its baseline", id)
			}
		})
	}
}
