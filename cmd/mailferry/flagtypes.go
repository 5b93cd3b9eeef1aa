package main

// Type names the value of a flag in pflag's messages; the help shows the
// name in the flag's usage text (FILE, SIZE, DATE...) instead.
func (*sizeFlag) Type() string  { return "size" }
func (*dateFlag) Type() string  { return "date" }
func (*multiFlag) Type() string { return "stringArray" }
