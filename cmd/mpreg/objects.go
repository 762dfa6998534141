package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mpreg/mpreg/bus"
	"github.com/mpreg/mpreg/objref/objstore"
)

// objectsTimeout bounds `mpreg objects` as a whole.
const objectsTimeout = 30 * time.Second

// objectsCmd is `mpreg objects`: the cluster's object bucket, where values
// too big for a message pass by reference (docs/PROTOCOL.md §4.7).
type objectsCmd struct {
	Ls objectsLsCmd `cmd:"" help:"List the objects of the cluster's bucket: name, size, age, the node that stored it and the request it is of."`
	Rm objectsRmCmd `cmd:"" help:"Delete objects of the cluster's bucket: by name, all, or those older than a duration."`
}

// objectsLsCmd is `mpreg objects ls`.
type objectsLsCmd struct {
	JSON bool `help:"Print a JSON list instead of a table."`
	clientFlags
}

// objectsRmCmd is `mpreg objects rm`.
type objectsRmCmd struct {
	Names     []string      `arg:"" optional:"" help:"Names of the objects to delete." placeholder:"NAME"`
	All       bool          `help:"Delete every object of the bucket." env:"-"`
	OlderThan time.Duration `help:"Delete the objects stored longer ago than this." placeholder:"DUR" env:"-"`
	clientFlags
}

// objectJSON is one object in `mpreg objects ls --json`.
type objectJSON struct {
	Name      string    `json:"name"`
	Size      uint64    `json:"size"`
	Modified  time.Time `json:"modified"`
	AgeMS     int64     `json:"age_ms"`
	Node      string    `json:"node,omitempty"`
	RequestID string    `json:"request_id,omitempty"`
	Step      string    `json:"step,omitempty"`
}

// openBucket connects and opens the cluster's object bucket, without
// creating it.
func openBucket(ctx context.Context, f clientFlags) (jetstream.ObjectStore, func(), error) {
	nc, err := bus.Connect(ctx, bus.ConnConfig{Servers: bus.SplitURLs(f.Servers...), Auth: f.auth(), InboxPrefix: f.InboxPrefix,
		Name: "mpreg-cli", Options: oneShot})
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		var store jetstream.ObjectStore
		name := bus.ObjectBucket("", f.Cluster)
		store, err = js.ObjectStore(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrBucketNotFound):
			err = fmt.Errorf("cluster %s has no object bucket %s: no value passed by reference yet", f.Cluster, name)
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
			err = fmt.Errorf("no JetStream for this NATS account, so no object bucket: %w", err)
		case err == nil:
			return store, nc.Close, nil
		}
	}
	nc.Close()
	return nil, nil, err
}

// Validate checks the flags and that exactly one of names, --all and
// --older-than says what to delete.
func (c *objectsRmCmd) Validate() error {
	n := 0
	for _, set := range []bool{len(c.Names) > 0, c.All, c.OlderThan > 0} {
		if set {
			n++
		}
	}
	if n != 1 {
		return errors.New("name the objects to delete, or give --all or --older-than (one of the three)")
	}
	return c.clientFlags.Validate()
}

// Run lists the bucket.
func (c *objectsLsCmd) Run(e *env) error {
	ctx, cancel := context.WithTimeout(e.ctx, objectsTimeout)
	defer cancel()
	store, closeConn, err := openBucket(ctx, c.clientFlags)
	if err != nil {
		return err
	}
	defer closeConn()
	infos, err := bus.ListObjects(ctx, store)
	if err != nil {
		return err
	}
	objs := describeObjects(infos, time.Now())
	if c.JSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(objs)
	}
	return printObjects(e.stdout, objs)
}

// describeObjects turns the bucket's objects into objectJSONs, oldest first.
func describeObjects(infos []*jetstream.ObjectInfo, now time.Time) []objectJSON {
	out := make([]objectJSON, 0, len(infos))
	for _, i := range infos {
		o := objectJSON{Name: i.Name, Size: i.Size, Modified: i.ModTime.UTC(), AgeMS: now.Sub(i.ModTime).Milliseconds(),
			Node: i.Metadata[objstore.MetaNode]}
		if id := i.Metadata[objstore.MetaID]; id != "" { // an exec id: "<request id>/<step name>"
			o.RequestID, o.Step = id, ""
			if k := strings.LastIndexByte(id, '/'); k >= 0 {
				o.RequestID, o.Step = id[:k], id[k+1:]
			}
		}
		out = append(out, o)
	}
	slices.SortStableFunc(out, func(a, b objectJSON) int { return a.Modified.Compare(b.Modified) })
	return out
}

// printObjects writes objs as a table.
func printObjects(w io.Writer, objs []objectJSON) error {
	if len(objs) == 0 {
		_, err := fmt.Fprintln(w, "no objects")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSIZE\tAGE\tNODE\tREQUEST\tSTEP")
	var total uint64
	for _, o := range objs {
		total += o.Size
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", o.Name, roundByteSize(int64(o.Size)),
			(time.Duration(o.AgeMS) * time.Millisecond).Round(time.Second), orDash(o.Node), orDash(o.RequestID), orDash(o.Step))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%s, %s\n", countObjects(len(objs)), roundByteSize(int64(total)))
	return err
}

// Run deletes the objects named, all, or those older than --older-than,
// and says how many. A name that is not there is an error, after the
// others are deleted.
func (c *objectsRmCmd) Run(e *env) error {
	ctx, cancel := context.WithTimeout(e.ctx, objectsTimeout)
	defer cancel()
	store, closeConn, err := openBucket(ctx, c.clientFlags)
	if err != nil {
		return err
	}
	defer closeConn()
	names := c.Names
	if len(names) == 0 {
		if names, err = c.matching(ctx, store); err != nil {
			return err
		}
	}
	var missing []string
	deleted := 0
	for _, name := range names {
		err := store.Delete(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrObjectNotFound):
			missing = append(missing, name)
		case err != nil:
			return fmt.Errorf("deleting object %s (%d deleted before it): %w", name, deleted, err)
		default:
			deleted++
		}
	}
	if _, err := fmt.Fprintf(e.stdout, "deleted %s\n", countObjects(deleted)); err != nil {
		return err
	}
	if len(missing) > 0 {
		return fmt.Errorf("no such object: %s", strings.Join(missing, ", "))
	}
	return nil
}

// matching lists the names of the objects --all or --older-than chooses.
func (c *objectsRmCmd) matching(ctx context.Context, store jetstream.ObjectStore) ([]string, error) {
	infos, err := bus.ListObjects(ctx, store)
	if err != nil {
		return nil, err
	}
	cut := time.Now().Add(-c.OlderThan)
	var names []string
	for _, i := range infos {
		if c.All || i.ModTime.Before(cut) {
			names = append(names, i.Name)
		}
	}
	return names, nil
}

// countObjects writes "1 object", "2 objects".
func countObjects(n int) string {
	if n == 1 {
		return "1 object"
	}
	return fmt.Sprintf("%d objects", n)
}
