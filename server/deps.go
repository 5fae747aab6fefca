package server

// Deps are the domain components behind the handlers. A nil field makes the
// RPCs that need it answer UNIMPLEMENTED after validating their input.
type Deps struct{}
