package consulagent

import "syscall"

// sysProcAttr puts the agent in its own process group, so a terminal's Ctrl-C reaches
// only quorumq (which stops the agent in order), and has the kernel kill the agent if
// quorumq dies without stopping it.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
