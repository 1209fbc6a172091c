package bench

// progs.c holds the programs the verdict benchmark compares the datapath
// with: an empty program, a reference lookup and a linear rule scan.
//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bench -type ref4_key -type ref6_key -type ref_port_key -type rule Progs progs.c
