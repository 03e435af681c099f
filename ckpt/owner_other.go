//go:build !unix

package ckpt

// pidExists cannot tell on this system whether a process exists: every owner counts as
// alive, so leftovers are never removed on such systems.
func pidExists(pid int) bool { return true }
