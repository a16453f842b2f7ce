// Package sdnotify tells systemd about the service's state (sd_notify):
// READY=1 once it serves, STOPPING=1 when it drains. Without NOTIFY_SOCKET
// (not started by systemd with Type=notify) every call does nothing.
package sdnotify

import (
	"fmt"
	"net"
	"os"
)

// Notify sends state (for example "READY=1") to the socket named by
// NOTIFY_SOCKET. It reports false, nil when the variable is unset.
func Notify(state string) (sent bool, err error) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return false, nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return false, fmt.Errorf("sd_notify: connect to NOTIFY_SOCKET %s: %w", os.Getenv("NOTIFY_SOCKET"), err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return false, fmt.Errorf("sd_notify: send %q: %w", state, err)
	}
	return true, nil
}
