package config

import "fmt"

// Override replaces one key of the configuration file with a value from the
// command line. Overrides are applied to the parsed file before it is
// validated, so a bad value gets exactly the message the same value would
// get in the file, with the flag named as well (Error.Flag).
type Override struct {
	Key   string // dotted key, e.g. "log.level"
	Flag  string // the flag that set it, without dashes, e.g. "log-level"
	Value string
}

// OverridableKeys are the keys an Override may set: the string-valued keys
// the command line has flags for.
var OverridableKeys = []string{"device.name", "control.socket", "metrics.listen", "log.level", "log.format", "log.key_log"}

// field returns the file's field for an overridable key.
func (f *file) field(key string) *string {
	switch key {
	case "device.name":
		return &f.Device.Name
	case "control.socket":
		return &f.Control.Socket
	case "metrics.listen":
		return &f.Metrics.Listen
	case "log.level":
		return &f.Log.Level
	case "log.format":
		return &f.Log.Format
	case "log.key_log":
		return &f.Log.KeyLog
	}
	return nil
}

// apply patches f with ovs and returns which flag set which key.
func (f *file) apply(name string, ovs []Override) (map[string]string, error) {
	flags := make(map[string]string, len(ovs))
	for _, o := range ovs {
		p := f.field(o.Key)
		if p == nil {
			// A caller's mistake, not the user's: the flags are fixed.
			return nil, &Error{File: name, Key: o.Key, Flag: o.Flag, Msg: fmt.Sprintf("cannot be set from the command line (only %v)", OverridableKeys)}
		}
		*p = o.Value
		flags[o.Key] = o.Flag
	}
	return flags, nil
}
