package blend

// SetDefaults gives an unset method the command's default, Linear (see ops.Defaulter), so
// that a blend read from a recipe records the parameters the command records.
func (o *Options) SetDefaults() {
	if o.Method == "" {
		o.Method = Linear
	}
}
