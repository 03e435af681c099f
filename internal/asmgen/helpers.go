package main

import (
	"fmt"

	"github.com/mmcloughlin/avo/attr"
	"github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// text starts a function: name, signature (a Go func type), and its doc lines.
func text(name, sig string, doc ...string) {
	c.Function(name)
	c.Attributes(attr.NOSPLIT)
	c.SignatureExpr(sig)
	if len(doc) > 0 {
		c.Doc(doc...)
	}
}

// consts holds the read-only constants of the file being generated, by name.
var consts map[string]operand.Mem

// splat32 returns a 32-byte constant holding v in each of its eight 32-bit lanes.
func splat32(v uint32) operand.Mem {
	name := fmt.Sprintf("splat32_%08x", v)
	if m, ok := consts[name]; ok {
		return m
	}
	m := c.StaticGlobal(name)
	c.DataAttributes(attr.RODATA | attr.NOPTR)
	for i := 0; i < 8; i++ {
		c.AddDatum(4*i, operand.U32(v))
	}
	consts[name] = m
	return m
}

// splat64 returns a 32-byte constant holding v in each of its four 64-bit lanes.
func splat64(v uint64) operand.Mem {
	name := fmt.Sprintf("splat64_%016x", v)
	if m, ok := consts[name]; ok {
		return m
	}
	m := c.StaticGlobal(name)
	c.DataAttributes(attr.RODATA | attr.NOPTR)
	for i := 0; i < 4; i++ {
		c.AddDatum(8*i, operand.U64(v))
	}
	consts[name] = m
	return m
}

// table32 returns a 32-byte constant of eight given 32-bit lanes.
func table32(name string, v [8]uint32) operand.Mem {
	if m, ok := consts[name]; ok {
		return m
	}
	m := c.StaticGlobal(name)
	c.DataAttributes(attr.RODATA | attr.NOPTR)
	for i, x := range v {
		c.AddDatum(4*i, operand.U32(x))
	}
	consts[name] = m
	return m
}

// bytes32 returns a 32-byte constant of given bytes.
func bytes32(name string, v [32]byte) operand.Mem {
	if m, ok := consts[name]; ok {
		return m
	}
	m := c.StaticGlobal(name)
	c.DataAttributes(attr.RODATA | attr.NOPTR)
	for i, x := range v {
		c.AddDatum(i, operand.U8(x))
	}
	consts[name] = m
	return m
}

// load returns a general register holding the named parameter component.
func loadBase(param string) reg.GPVirtual {
	r := c.GP64()
	c.Load(c.Param(param).Base(), r)
	return r
}

func loadLen(param string) reg.GPVirtual {
	r := c.GP64()
	c.Load(c.Param(param).Len(), r)
	return r
}

func loadParam(param string) reg.GPVirtual {
	r := c.GP64()
	c.Load(c.Param(param), r)
	return r
}

func mem(base reg.Register, disp int) operand.Mem { return operand.Mem{Base: base, Disp: disp} }

func lbl(name string) operand.LabelRef { return operand.LabelRef(name) }
