package privilege

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// OpenExecutable opens the binary a privileged process starts children
// from, so that each runs the file found now, whatever replaces the path
// later (a package upgrade). The file must be root's and writable by root
// alone: whoever can write it writes the code of the next child, which gets
// what the parent hands it. The descriptor is moved to 10 or above, out of
// the way of the descriptors a child is given (3 and up), since the exec
// goes through /proc/self/fd after they are in place.
func OpenExecutable(path string) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // names the path
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fmt.Errorf("inspect %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 || st.Mode&0o022 != 0 || st.Mode&0o001 == 0 || st.Mode&(unix.S_ISUID|unix.S_ISGID) != 0 {
		if real, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd())); err == nil {
			path = real // a descriptor the caller was passed: name its file
		}
		return nil, fmt.Errorf("%s (uid %d, mode %#o) must be a regular file owned by root, writable by root alone, executable by all, neither setuid nor setgid: chown root: and chmod 0755 it", path, st.Uid, st.Mode&0o7777)
	}
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 10)
	if err != nil {
		return nil, fmt.Errorf("hold %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// CloseInherited closes every descriptor this process inherited beyond
// stdio, except keep. Those are the ones without close-on-exec: the exec
// that started this process closed any that had it, and Go opens
// everything with it. Call it before opening any descriptor without
// close-on-exec.
func CloseInherited(keep *os.File) error {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fmt.Errorf("list inherited descriptors: %w", err)
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil || fd < 3 || keep != nil && uintptr(fd) == keep.Fd() {
			continue
		}
		if flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err == nil && flags&unix.FD_CLOEXEC == 0 {
			unix.Close(fd)
		}
	}
	return nil
}
