package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// jsLimit is the target of the TypeScript phase: the package's caller,
// and a request to its node, within 1.3× of nats.js raw request/reply at
// p50 in the same run.
const jsLimit = 1.3

// jsRow is one figure a bench script of the npm package reports: its p50
// and the p50 of the raw nats.js request/reply it is read against.
type jsRow struct {
	Name      string  `json:"name"`
	P50US     float64 `json:"p50_us"`
	Base      string  `json:"base"`
	BaseP50US float64 `json:"base_p50_us"`
}

// jsMarker starts the one line of a bench script's output that mpreg
// bench reads (the scripts print it when MPREG_BENCH_JSON is set).
const jsMarker = "MPREG-BENCH-JSON "

// jsScripts are the package's bench scripts, each run with rounds and
// calls per round.
var jsScripts = []string{"bench/caller.mjs", "bench/node.mjs"}

// runJS runs the bench scripts of the npm package in cfg.JS against url
// (the run's NATS server; the Go node of the run plans and serves echo)
// and writes their figures and the targets check to w.
func runJS(ctx context.Context, w io.Writer, cfg Config, url string) error {
	nodeBin, err := exec.LookPath("node")
	if err != nil {
		return fmt.Errorf("%w: --js needs node (Node.js): %w", ErrInvalidConfig, err)
	}
	if _, err := os.Stat(filepath.Join(cfg.JS, "dist", "index.js")); err != nil {
		return fmt.Errorf("%w: --js %s: the package is not built (npm ci && npm run build there): %w", ErrInvalidConfig, cfg.JS, err)
	}
	version, _ := exec.CommandContext(ctx, nodeBin, "--version").Output()
	var rows []jsRow
	for _, script := range jsScripts {
		got, err := runScript(ctx, nodeBin, cfg, url, script)
		if err != nil {
			return err
		}
		rows = append(rows, got...)
	}
	fmt.Fprintf(w, "\nTypeScript (the mpreg npm package, node %s), p50 against nats.js raw request/reply in the same run:\n",
		strings.TrimSpace(string(version)))
	fmt.Fprintf(w, "%22s %10s  %-18s %10s %8s\n", "scenario", "p50", "against", "its p50", "ratio")
	for _, r := range rows {
		fmt.Fprintf(w, "%22s %10s  %-18s %10s %7.2fx\n", r.Name, fmtDur(us(r.P50US)), r.Base, fmtDur(us(r.BaseP50US)), ratio(r.P50US, r.BaseP50US))
	}
	fmt.Fprintf(w, "\ntargets (TypeScript):\n")
	for _, r := range rows {
		got := ratio(r.P50US, r.BaseP50US)
		verdict := "PASS"
		if got > jsLimit {
			verdict = "MISS"
		}
		fmt.Fprintf(w, "  %s  %-48s %.2fx (target %.2fx)\n", verdict, r.Name+" p50 / "+r.Base+" p50", got, jsLimit)
	}
	return nil
}

// runScript runs one bench script and returns the rows it reported. Its
// calls per round follow cfg.Duration: 500 at 2 s, 20 at least.
func runScript(ctx context.Context, nodeBin string, cfg Config, url, script string) ([]jsRow, error) {
	calls := max(20, min(500, int(cfg.Duration/(4*time.Millisecond))))
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, nodeBin, script, "5", fmt.Sprint(calls))
	cmd.Dir = cfg.JS
	cmd.Env = append(os.Environ(), "MPREG_SERVERS="+url, "MPREG_CLUSTER="+cfg.Cluster, "MPREG_BENCH_JSON=1")
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("bench: --js: %s: %w: %s", script, err, strings.TrimSpace(errOut.String()))
	}
	return jsRows(script, out.Bytes())
}

// jsRows reads the rows of a script's marked line.
func jsRows(script string, out []byte) ([]jsRow, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), jsMarker)
		if !ok {
			continue
		}
		var v struct {
			Rows []jsRow `json:"rows"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			return nil, fmt.Errorf("bench: --js: %s: %w", script, err)
		}
		if len(v.Rows) == 0 {
			break
		}
		return v.Rows, nil
	}
	return nil, fmt.Errorf("bench: --js: %s printed no figures", script)
}

// us is a duration of f microseconds.
func us(f float64) time.Duration { return time.Duration(f * float64(time.Microsecond)) }
