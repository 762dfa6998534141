package bench

import (
	"testing"
)

// A script's figures come from its one marked line; anything else is an
// error naming the script.
func TestJSRows(t *testing.T) {
	out := []byte("some text\nMPREG-BENCH-JSON {\"rows\":[{\"name\":\"ts-node-exec\",\"p50_us\":224.3,\"base\":\"nats.js raw\",\"base_p50_us\":192.9}]}\n")
	rows, err := jsRows("bench/node.mjs", out)
	if err != nil || len(rows) != 1 || rows[0].Name != "ts-node-exec" || rows[0].P50US != 224.3 || rows[0].BaseP50US != 192.9 {
		t.Fatalf("rows %+v, err %v", rows, err)
	}
	for _, bad := range []string{"no figures\n", "MPREG-BENCH-JSON {\"rows\":[]}\n", "MPREG-BENCH-JSON {not json\n"} {
		if _, err := jsRows("bench/x.mjs", []byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
