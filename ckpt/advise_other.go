//go:build !linux

package ckpt

import "os"

func adviseSequential(targets []*target) {}

func adviseWritten(f *os.File) {}

func startWriteback(f *os.File) {}
