package bpf

//go:generate go tool bpf2go -cc clang -cflags "-O2 -g -Wall -Werror -I/usr/include/x86_64-linux-gnu" -target bpfel -go-package bpf -type addr4_key -type addr6_key -type addr_value -type port_key -type port_value -type selector_value -type half_config -type ct_key -type ct_value -type counter -type event -type info_value -type frag_key Datapath pcisegment.c
