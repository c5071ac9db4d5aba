package jsontext

// skipsNothing: skipPlain16 has a vector version here.
const skipsNothing = false
