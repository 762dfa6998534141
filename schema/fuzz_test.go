package schema_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/codec"
	"github.com/mpreg/mpreg/schema"
)

// fuzzRequests seed FuzzParseRequest: the §4 example and bodies near each
// check of ParseRequest.
var fuzzRequests = []string{
	exampleRequest,
	`{"cmds":[{"name":"a","fun":"f"}]}`,
	`{"cmds":[{"name":"a","fun":"f","args":[{"$ref":"b","path":"/x~1y/0"}],"kwargs":{"k":{"$ref":"b"}}},{"name":"b","fun":"g"}],"results":"all"}`,
	`{"cmds":[{"name":"a","fun":"f"},{"name":"b","fun":"f","args":"x"}]}`,
	`{"cmds":[{"name":"a","fun":"a.b"}]}`,
	`{"cmds":[{"name":"a","fun":"f","locs":["gpu",1]}],"timeout_ms":-1,"results":"some"}`,
	`{"cmds":[],"timeout_ms":1.5}`,
	`{"cmds":"x"}`,
	`{"id":null,"cmds":[{"name":"","fun":""}]}`,
	`[]`,
	`{"on_error":"continue","results":"all","cmds":[{"name":"a","fun":"f"},{"name":"b","fun":"g","args":["a"]}]}`,
	`{"on_error":"sometimes","cmds":[{"name":"a","fun":"f"}]}`,
	`{"on_error":7,"cmds":[{"name":"a","fun":"f"}]}`,
	`{"route_wait_ms":250,"cmds":[{"name":"a","fun":"f"}]}`,
	`{"dry_run":true,"cmds":[{"name":"a","fun":"f"},{"name":"b","fun":"g","args":["a"]}]}`,
	`{"dry_run":"yes","cmds":[{"name":"a","fun":"f"}]}`,
	`{"trace":true,"on_error":"continue","route_wait_ms":5,"cmds":[{"name":"a","fun":"f"}]}`,
	`{"trace":1,"cmds":[{"name":"a","fun":"f"}]}`,
	`{"route_wait_ms":-1,"cmds":[{"name":"a","fun":"f"}]}`,
	`{"route_wait_ms":1e300,"cmds":[{"name":"a","fun":"f"}]}`,
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range fuzzRequests {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkParseRequest(t, codec.JSON, data) })
}

// FuzzParseRequestMsgPack is FuzzParseRequest for bodies in MessagePack.
func FuzzParseRequestMsgPack(f *testing.F) {
	for _, s := range fuzzRequests {
		v, err := codec.JSON.Decode([]byte(s))
		if err != nil {
			continue
		}
		b, err := codec.MsgPack.Encode(v)
		require.NoError(f, err)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkParseRequest(t, codec.MsgPack, data) })
}

// checkParseRequest decodes data with c and checks what ParseRequest makes
// of it: a typed INVALID_REQUEST naming its key, or a request that keeps
// every rule and survives a round trip through both codecs.
func checkParseRequest(t *testing.T, c codec.Codec, data []byte) {
	{
		v, err := c.Decode(data)
		if err != nil {
			return
		}
		r, err := schema.ParseRequest(v)
		if err != nil {
			require.Nil(t, r)
			var e *schema.Error
			require.True(t, errors.As(err, &e), "error %T %v is not a *schema.Error", err, err)
			require.Equal(t, schema.CodeInvalidRequest, e.Code)
			details, ok := e.Details.(map[string]any)
			require.True(t, ok, "details %#v", e.Details)
			key, _ := details["key"].(string)
			require.NotEmpty(t, key)
			require.Contains(t, e.Message, key)
			return
		}
		require.NotEmpty(t, r.Cmds)
		require.GreaterOrEqual(t, r.TimeoutMS, int64(0))
		require.Contains(t, []string{schema.ResultsSinks, schema.ResultsAll}, r.Results)
		for _, c := range r.Cmds {
			require.NotEmpty(t, c.Name)
			require.Nil(t, schema.CheckFunName(c.Fun))
			for _, l := range c.Locs {
				require.Nil(t, schema.CheckLoc(l))
			}
		}
		// A parsed request encodes and parses again to the same request.
		for _, c := range []codec.Codec{codec.JSON, codec.MsgPack} {
			b, err := c.Encode(r)
			require.NoError(t, err)
			v2, err := c.Decode(b)
			require.NoError(t, err)
			r2, err := schema.ParseRequest(v2)
			require.NoError(t, err)
			require.Equal(t, len(r.Cmds), len(r2.Cmds))
			require.Equal(t, r.ID, r2.ID)
			require.Equal(t, r.TimeoutMS, r2.TimeoutMS)
			require.Equal(t, r.DeadlineMS, r2.DeadlineMS)
		}
	}
}
