// Package cthread starts a thread from C, the way a cgo library would, for
// the sandbox tests: glibc's pthread_create tries clone3 first and falls
// back to clone only when clone3 answers ENOSYS.
package cthread

/*
#include <pthread.h>
#include <unistd.h>
#include <sys/syscall.h>

static void *cthread_main(void *arg) {
	*(long *)arg = syscall(SYS_gettid);
	return NULL;
}

static int cthread_run(long *tid) {
	pthread_t t;
	int err = pthread_create(&t, NULL, cthread_main, tid);
	if (err != 0)
		return err;
	return pthread_join(t, NULL);
}
*/
import "C"

import (
	"fmt"
	"syscall"
)

// Run starts a thread with pthread_create, waits for it to end, and
// returns the thread id it ran as.
func Run() (int, error) {
	var tid C.long
	if rc := C.cthread_run(&tid); rc != 0 {
		return 0, fmt.Errorf("pthread_create: %w", syscall.Errno(rc))
	}
	return int(tid), nil
}
