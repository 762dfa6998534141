package mesh_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/internal/testcluster"
	"github.com/mpreg/mpreg/internal/testwait"
	"github.com/mpreg/mpreg/mesh"
	"github.com/mpreg/mpreg/schema"
)

func TestRequester(t *testing.T) {
	srv := testcluster.Server(t)
	nc := testcluster.Conn(t, srv.ClientURL())
	r, err := mesh.NewRequester(nc)
	require.NoError(t, err)
	defer r.Close()
	sub, err := nc.Subscribe("t.echo", func(m *nats.Msg) { _ = m.Respond(m.Data) })
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.Flush())

	msg := &nats.Msg{Subject: "t.echo", Data: []byte("hi")}
	m, err := r.Request(testwait.Ctx(t), msg)
	require.NoError(t, err)
	require.Equal(t, "hi", string(m.Data))
	require.Empty(t, msg.Reply, "the caller's message is not modified")

	_, err = r.Request(testwait.Ctx(t), &nats.Msg{Subject: "t.nobody"})
	require.ErrorIs(t, err, nats.ErrNoResponders)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	silent, err := nc.Subscribe("t.silent", func(*nats.Msg) {})
	require.NoError(t, err)
	defer func() { _ = silent.Unsubscribe() }()
	_, err = r.Request(ctx, &nats.Msg{Subject: "t.silent"})
	require.ErrorIs(t, err, context.DeadlineExceeded)

	done := make(chan error, 1)
	go func() {
		_, err := r.Request(context.Background(), &nats.Msg{Subject: "t.silent"})
		done <- err
	}()
	r.Close()
	require.ErrorIs(t, testwait.Recv(t, done, "the request to end"), mesh.ErrRequesterClosed)
}

// A reply that comes after its request gave up, or a second reply to one
// request, reaches no other request: each request, with or without header,
// gets its own reply.
func TestRequesterLateAndDoubleReplies(t *testing.T) {
	srv := testcluster.Server(t)
	nc := testcluster.Conn(t, srv.ClientURL())
	r, err := mesh.NewRequester(nc)
	require.NoError(t, err)
	defer r.Close()
	held := make(chan *nats.Msg, 1)
	for subject, handler := range map[string]nats.MsgHandler{
		"t.hold":  func(m *nats.Msg) { held <- m },
		"t.twice": func(m *nats.Msg) { _ = m.Respond(m.Data); _ = m.Respond([]byte("again")) },
		"t.echo":  func(m *nats.Msg) { _ = m.Respond(append([]byte(m.Header.Get("X")+":"), m.Data...)) },
	} {
		sub, err := nc.Subscribe(subject, handler)
		require.NoError(t, err)
		defer func() { _ = sub.Unsubscribe() }()
	}
	require.NoError(t, nc.Flush())

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = r.Request(ctx, &nats.Msg{Subject: "t.hold", Data: []byte("late")})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	late := testwait.Recv(t, held, "the held request")

	for i := range 50 {
		if i == 1 {
			require.NoError(t, late.Respond([]byte("late")))
		}
		n := strconv.Itoa(i)
		m, err := r.Request(testwait.Ctx(t), &nats.Msg{Subject: "t.twice", Data: []byte(n)})
		require.NoError(t, err)
		require.Equal(t, n, string(m.Data))
		msg := &nats.Msg{Subject: "t.echo", Header: nats.Header{"X": []string{"h"}}, Data: []byte(n)}
		m, err = r.Request(testwait.Ctx(t), msg)
		require.NoError(t, err)
		require.Equal(t, "h:"+n, string(m.Data))
		require.Empty(t, msg.Reply, "the caller's message is not modified")
	}
}

// RequestParts keeps every part event that comes before the response, in
// order, also more than a stream's events may wait; past its bound the
// request fails whole.
func TestRequesterParts(t *testing.T) {
	srv := testcluster.Server(t)
	nc := testcluster.Conn(t, srv.ClientURL())
	r, err := mesh.NewRequester(nc)
	require.NoError(t, err)
	defer r.Close()
	const parts = 2 * mesh.StreamEvents
	sub, err := nc.Subscribe("t.parts", func(m *nats.Msg) {
		for i := range parts {
			out := nats.NewMsg(m.Reply)
			out.Header.Set(schema.HeaderEvent, schema.EventPart)
			out.Data = []byte(strconv.Itoa(i))
			_ = nc.PublishMsg(out)
		}
		out := nats.NewMsg(m.Reply)
		out.Header.Set(schema.HeaderEvent, schema.EventResult)
		out.Data = []byte("end")
		_ = nc.PublishMsg(out)
	})
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, nc.Flush())

	m, got, err := r.RequestParts(testwait.Ctx(t), &nats.Msg{Subject: "t.parts"}, 1<<20)
	require.NoError(t, err)
	require.Equal(t, "end", string(m.Data))
	require.Len(t, got, parts)
	for i, p := range got {
		require.Equal(t, strconv.Itoa(i), string(p.Data))
	}

	_, _, err = r.RequestParts(testwait.Ctx(t), &nats.Msg{Subject: "t.parts"}, 100)
	require.ErrorIs(t, err, mesh.ErrPartsTooLarge)

	// A plain request on the same requester still gets the first message.
	m, err = r.Request(testwait.Ctx(t), &nats.Msg{Subject: "t.parts"})
	require.NoError(t, err)
	require.Equal(t, "0", string(m.Data))
}

func TestFlow(t *testing.T) {
	const maxPayload = 256 << 10
	f := mesh.NewFlow(1 << 20)
	// A function not seen yet expects the max payload: three fit the
	// window with their requests, the fourth waits.
	var held []int64
	for range 3 {
		n, err := f.Reserve(testwait.Ctx(t), "big", 1000, maxPayload)
		require.NoError(t, err)
		require.Equal(t, int64(1000+maxPayload), n)
		held = append(held, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := f.Reserve(ctx, "big", maxPayload/4, maxPayload)
	require.True(t, errors.Is(err, context.DeadlineExceeded), "the window is full: %v", err)
	f.Release(held[0])
	n, err := f.Reserve(testwait.Ctx(t), "big", 1000, maxPayload)
	require.NoError(t, err, "room again once a step is done")
	f.Release(n)
	for _, n := range held[1:] {
		f.Release(n)
	}

	// Once replies were seen, twice the largest recent one is expected
	// (at least 4 KiB), never more than the max payload or the window.
	f.Observe("small", 100)
	n, err = f.Reserve(testwait.Ctx(t), "small", 10, maxPayload)
	require.NoError(t, err)
	require.Equal(t, int64(10+4<<10), n)
	f.Release(n)
	f.Observe("small", 100_000)
	n, err = f.Reserve(testwait.Ctx(t), "small", 10, maxPayload)
	require.NoError(t, err)
	require.Equal(t, int64(10+200_000), n)
	f.Release(n)
	f.Observe("small", 300_000)
	n, err = f.Reserve(testwait.Ctx(t), "small", 10, maxPayload)
	require.NoError(t, err)
	require.Equal(t, int64(10+maxPayload), n, "never more than the max payload")
	f.Release(n)
	n, err = f.Reserve(testwait.Ctx(t), "huge", 5<<20, maxPayload)
	require.NoError(t, err, "a step larger than the window takes the whole window, not forever")
	require.Equal(t, int64(1<<20), n)
	f.Release(n)
}
