package node

import (
	"container/list"
	"sync"
)

// objCache keeps the bytes of objects this node stored, by name, up to
// max bytes in all: the least recently used go first. A step that runs
// where its input was made reads it here instead of fetching it. Entries
// are never written to after they are put: readers get the slice itself
// and must not change it.
type objCache struct {
	mu    sync.Mutex
	max   int64
	size  int64
	ll    *list.List // of *cached, most recent first
	items map[string]*list.Element
}

// cached is one object in an objCache.
type cached struct {
	name   string
	data   []byte
	sha256 string // lower-case hex, as in its reference
}

func newObjCache(bound int64) *objCache {
	return &objCache{max: bound, ll: list.New(), items: map[string]*list.Element{}}
}

// put keeps data under name, dropping the least recently used objects
// to make room; an object larger than the whole cache is not kept.
func (c *objCache) put(name, sha256 string, data []byte) {
	n := int64(len(data))
	if n > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[name]; ok {
		c.drop(el)
	}
	for c.size+n > c.max {
		c.drop(c.ll.Back())
	}
	c.items[name] = c.ll.PushFront(&cached{name: name, data: data, sha256: sha256})
	c.size += n
}

// get returns the object stored under name, if kept.
func (c *objCache) get(name string) (*cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[name]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(el)
	return el.Value.(*cached), true
}

// remove forgets the object stored under name, if kept.
func (c *objCache) remove(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[name]; ok {
		c.drop(el)
	}
}

// bytes returns the bytes kept and the number of objects.
func (c *objCache) bytes() (int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size, len(c.items)
}

func (c *objCache) drop(el *list.Element) {
	e := c.ll.Remove(el).(*cached)
	delete(c.items, e.name)
	c.size -= int64(len(e.data))
}
