package integration

import (
	"strconv"
	"strings"
	"testing"
)

// promText is a Prometheus text exposition.
type promText string

func metrics(t *testing.T, d *daemon) promText {
	t.Helper()
	b, err := d.api.Metrics()
	if err != nil {
		t.Fatalf("%s: /metrics: %v", d.role, err)
	}
	return promText(b)
}

// sum adds the values of every sample of metric name whose labels contain
// all of the given label matchers (e.g. `outcome="plain"`).
func (p promText) sum(name string, labels ...string) float64 {
	var total float64
	for _, line := range strings.Split(string(p), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		ok = true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
		if len(f) == 0 {
			continue
		}
		if v, err := strconv.ParseFloat(f[0], 64); err == nil {
			total += v
		}
	}
	return total
}

func TestPromTextSum(t *testing.T) {
	p := promText(`# HELP x_total help
x_total{direction="in",outcome="plain"} 2
x_total{direction="out",outcome="plain"} 3
x_total{direction="out",outcome="encrypted"} 5
x_total_other 100
y 7
`)
	if v := p.sum("x_total", `outcome="plain"`); v != 5 {
		t.Fatalf("plain = %v", v)
	}
	if v := p.sum("x_total"); v != 10 {
		t.Fatalf("all = %v", v)
	}
	if v := p.sum("y"); v != 7 {
		t.Fatalf("y = %v", v)
	}
}
