package client

import "context"

// Resolve resolves the references in v as a call's result would be (and
// deletes the objects it fetched).
func (c *Client) Resolve(ctx context.Context, v any) (any, error) {
	rs := c.objs.resolver(false, "")
	defer rs.forget()
	return rs.resolve(ctx, v)
}
