#include "textflag.h"

// func skipPlain16(b []byte) int
//
// SSE2, which every amd64 CPU has: 16 bytes per step. A byte is special
// when it is below 0x20 or 0x80 and above (one signed compare: 0x20 > x),
// a quote or a backslash.
TEXT ·skipPlain16(SB), NOSPLIT, $0-32
	MOVQ b_base+0(FP), SI
	MOVQ b_len+8(FP), CX
	ANDQ $~15, CX
	MOVQ $0x2020202020202020, AX
	MOVQ AX, X1
	PUNPCKLQDQ X1, X1
	MOVQ $0x2222222222222222, AX
	MOVQ AX, X2
	PUNPCKLQDQ X2, X2
	MOVQ $0x5c5c5c5c5c5c5c5c, AX
	MOVQ AX, X3
	PUNPCKLQDQ X3, X3
	XORQ DX, DX

loop:
	CMPQ DX, CX
	JAE  done
	MOVOU (SI)(DX*1), X0
	MOVO  X1, X4
	PCMPGTB X0, X4
	MOVO  X0, X5
	PCMPEQB X2, X5
	PCMPEQB X3, X0
	POR   X5, X4
	POR   X0, X4
	PMOVMSKB X4, AX
	TESTL AX, AX
	JNZ   found
	ADDQ  $16, DX
	JMP   loop

found:
	BSFL AX, AX
	ADDQ AX, DX

done:
	MOVQ DX, ret+24(FP)
	RET
