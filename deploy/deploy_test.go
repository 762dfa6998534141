// Package deploy_test checks the deployment files that can be checked
// without a container runtime: the compose file, the Prometheus scrape
// configuration and the systemd unit agree with each other and with the
// flags of mpreg.
package deploy_test

import (
	goflag "flag"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

type compose struct {
	Services map[string]struct {
		Image           string   `yaml:"image"`
		Command         []string `yaml:"command"`
		StopGracePeriod string   `yaml:"stop_grace_period"`
		Volumes         []string `yaml:"volumes"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, yaml.Unmarshal(b, v), path)
}

// flag returns the value after name in a command line.
func flag(cmd []string, name string) string {
	i := slices.Index(cmd, name)
	if i < 0 || i+1 >= len(cmd) {
		return ""
	}
	return cmd[i+1]
}

func TestCompose(t *testing.T) {
	var c compose
	readYAML(t, "compose.yaml", &c)
	for _, name := range []string{"nats-1", "nats-2", "nats-3", "mpreg-node-1", "mpreg-node-2", "prometheus", "grafana"} {
		require.Contains(t, c.Services, name)
	}
	for _, name := range []string{"nats-1", "nats-2", "nats-3"} {
		s := c.Services[name]
		require.True(t, strings.HasPrefix(s.Image, "nats:"), "%s runs the official nats image", name)
		require.Equal(t, "mpreg", flag(s.Command, "--cluster_name"))
		require.NotEmpty(t, flag(s.Command, "--routes"))
		// JetStream, clustered: a stable server name and a store in a
		// volume of the server's own.
		require.Contains(t, s.Command, "--jetstream", name)
		require.Equal(t, name, flag(s.Command, "--name"))
		store := flag(s.Command, "--store_dir")
		require.NotEmpty(t, store, name)
		require.Contains(t, s.Volumes, name+"-data:"+store, name)
		require.Contains(t, c.Volumes, name+"-data")
		// nats-server reads the command line as meant.
		opts, err := server.ConfigureOptions(goflag.NewFlagSet(name, goflag.ContinueOnError), s.Command, func() {}, func() {}, func() {})
		require.NoError(t, err, name)
		require.True(t, opts.JetStream, name)
		require.Equal(t, store, opts.StoreDir, name)
		require.Equal(t, name, opts.ServerName, name)
		require.Len(t, opts.Routes, 2, name)
	}
	var prom struct {
		ScrapeConfigs []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"scrape_configs"`
	}
	readYAML(t, "prometheus/prometheus.yml", &prom)
	require.Len(t, prom.ScrapeConfigs, 1)
	targets := prom.ScrapeConfigs[0].StaticConfigs[0].Targets
	for _, name := range []string{"mpreg-node-1", "mpreg-node-2"} {
		s := c.Services[name]
		require.Equal(t, "node", s.Command[0])
		listen := flag(s.Command, "--metrics-listen")
		require.NotEmpty(t, listen)
		port := listen[strings.LastIndex(listen, ":"):]
		require.Contains(t, targets, name+port, "Prometheus scrapes %s where it listens", name)
		drain, err := time.ParseDuration(flag(s.Command, "--drain-timeout"))
		require.NoError(t, err)
		grace, err := time.ParseDuration(s.StopGracePeriod)
		require.NoError(t, err)
		require.Greater(t, grace, drain, "%s: compose waits longer than the drain", name)
	}
	require.Contains(t, c.Services["prometheus"].Volumes, "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro")
	require.Contains(t, c.Services["grafana"].Volumes, "./grafana/mpreg.json:/var/lib/grafana/dashboards/mpreg.json:ro")
	var provider struct {
		Providers []struct {
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/mpreg.yaml", &provider)
	require.Equal(t, "/var/lib/grafana/dashboards", provider.Providers[0].Options.Path)
}

func TestSystemdUnit(t *testing.T) {
	b, err := os.ReadFile("systemd/mpreg-node.service")
	require.NoError(t, err)
	unit := string(b)
	stop := regexp.MustCompile(`(?m)^TimeoutStopSec=(\S+)$`).FindStringSubmatch(unit)
	require.NotNil(t, stop)
	drain := regexp.MustCompile(`(?m)^ExecStart=.*--drain-timeout (\S+)`).FindStringSubmatch(unit)
	require.NotNil(t, drain)
	stopD, err := time.ParseDuration(stop[1])
	require.NoError(t, err)
	drainD, err := time.ParseDuration(drain[1])
	require.NoError(t, err)
	require.Greater(t, stopD, drainD, "systemd must not kill a node that is draining")
	require.Contains(t, unit, "ExecStart=/usr/local/bin/mpreg node ")
	require.Contains(t, unit, "KillSignal=SIGTERM")
}
