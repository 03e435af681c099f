// Package optfuzz holds fuzz targets for the option parsers of weft's operations (layer and
// head specs, token specs, tensor patterns and rules, sizes, dtypes). It is a separate package
// from hardening so that the readers' hostile-input suite does not depend on every op
// package compiling. It has no code of its own: everything is in its tests.
package optfuzz
