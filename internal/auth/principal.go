package auth

import (
	"fmt"
	"slices"
)

// Role is what a caller of the admin API may do. Roles are ordered: each
// may do everything the weaker ones may.
type Role int

// The roles, weakest first. The zero Role is no role at all, so a
// zero Principal may do nothing.
const (
	RoleViewer Role = iota + 1
	RoleOperator
	RoleAdmin
)

var roleNames = [...]string{RoleViewer: "viewer", RoleOperator: "operator", RoleAdmin: "admin"}

// ParseRole reads a role as written in the config and in JWT role claims:
// "viewer", "operator" or "admin", lower case.
func ParseRole(s string) (Role, error) {
	for r := RoleViewer; r <= RoleAdmin; r++ {
		if s == roleNames[r] {
			return r, nil
		}
	}
	return 0, fmt.Errorf("unknown role %q (want viewer, operator or admin)", s)
}

// String is the role's config name.
func (r Role) String() string {
	if r >= RoleViewer && r <= RoleAdmin {
		return roleNames[r]
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// MarshalText writes the config name, so a Role is a string in JSON.
func (r Role) MarshalText() ([]byte, error) {
	if r < RoleViewer || r > RoleAdmin {
		return nil, fmt.Errorf("marshal role: %d is not a role", int(r))
	}
	return []byte(roleNames[r]), nil
}

// Principal is an authenticated caller.
type Principal struct {
	// Name is the actor in the audit log: the token's name, or the JWT's
	// preferred_username, email or sub, the first one set.
	Name string
	Role Role
	// Services limits an operator or viewer to these services; empty:
	// all. Admins reach every service whatever it says.
	Services []string
	// Via is how the caller authenticated: "token" or "jwt".
	Via string
	// Key is stable per credential holder, for rate limits:
	// "token:"+name or "jwt:"+issuer+"/"+subject.
	Key string
}

// Can reports whether p's role is r or stronger.
func (p Principal) Can(r Role) bool {
	return p.Role >= RoleViewer && p.Role >= r
}

// CanService reports whether p may act on service svc: admins on every
// service, the others on those in Services, or on all when it is empty.
func (p Principal) CanService(svc string) bool {
	switch {
	case p.Role >= RoleAdmin:
		return true
	case p.Role < RoleViewer:
		return false
	default:
		return len(p.Services) == 0 || slices.Contains(p.Services, svc)
	}
}
