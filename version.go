package weft

// Version is weft's version, recorded in every output it writes.
const Version = "0.1.0"
