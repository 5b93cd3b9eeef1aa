package mbox

// fOFDSetLk is F_OFD_SETLK, the same on every Linux architecture
// (asm-generic/fcntl.h); package syscall defines it only for a few.
const fOFDSetLk = 37
