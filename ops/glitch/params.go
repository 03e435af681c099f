package glitch

// SetDefaults gives an unset match and name the command's defaults, "diag" and
// DefaultSoftTokenName (see ops.Defaulter), so that soft tokens read from a recipe record the
// parameters the command records.
func (o *SoftOptions) SetDefaults() {
	if o.Match == "" {
		o.Match = "diag"
	}
	if o.Name == "" {
		o.Name = DefaultSoftTokenName
	}
}
