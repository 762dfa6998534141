package main

import "github.com/mpreg/mpreg/internal/demo"

// demoCmd is `mpreg demo`.
type demoCmd struct{}

// Run runs the showcase, printing to stdout.
func (c *demoCmd) Run(e *env) error { return demo.Showcase(e.ctx, e.stdout) }
