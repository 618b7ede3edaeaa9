package secure

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/gofiber/fiber/v2"
)

// Auth guards a Fiber app: a request passes with a bearer token whose grant allows the
// route's role, or (when TrustCerts) over a connection whose client certificate the
// cluster CA signed (the TLS handshake has already verified it). A nil *Auth lets every
// request through: the process runs --insecure.
type Auth struct {
	Tokens     *Tokens
	TrustCerts bool
}

// TopicOf extracts the topic a request is about, "" when it names none.
type TopicOf func(c *fiber.Ctx) string

// Topic from the query string, a route parameter, or the JSON body's "topic".
var (
	TopicQuery TopicOf = func(c *fiber.Ctx) string { return c.Query("topic") }
	TopicBody  TopicOf = func(c *fiber.Ctx) string {
		var b struct {
			Topic string `json:"topic"`
		}
		_ = json.Unmarshal(c.Body(), &b) // a bad body is the handler's to refuse
		return b.Topic
	}
)

// TopicQueryOrBody is the query's topic, else the JSON body's: the brokers' produce
// takes either (binary batches name the topic in the query).
var TopicQueryOrBody TopicOf = func(c *fiber.Ctx) string {
	if t := c.Query("topic"); t != "" {
		return t
	}
	return TopicBody(c)
}

// TopicParam is the topic in route parameter name.
func TopicParam(name string) TopicOf { return func(c *fiber.Ctx) string { return c.Params(name) } }

// Require lets a request through when its credentials hold role ("" is any role) for
// the topic (nil: not about one topic). Missing or unknown token: 401; a token without
// the role or the topic: 403. Both as the API's JSON failure.
func (a *Auth) Require(role string, topic TopicOf) fiber.Handler {
	return func(c *fiber.Ctx) error {
		if a == nil || a.TrustCerts && a.clusterPeer(c) {
			return c.Next()
		}
		token, ok := bearer(c.Get(fiber.HeaderAuthorization))
		if !ok {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="quorumq"`)
			return deny(c, http.StatusUnauthorized, "missing credentials: send Authorization: Bearer <token> (quorumq token create)")
		}
		var g *Grant
		if a.Tokens != nil {
			g = a.Tokens.Check(token)
		}
		if g == nil {
			c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="quorumq", error="invalid_token"`)
			return deny(c, http.StatusUnauthorized, "invalid token")
		}
		t := ""
		if topic != nil {
			t = topic(c)
		}
		if !g.Allows(role, t) {
			if !g.Allows(role, "") {
				return deny(c, http.StatusForbidden, "this token lacks the role "+role)
			}
			return deny(c, http.StatusForbidden, "this token is not for topic "+t)
		}
		return c.Next()
	}
}

// clusterPeer reports whether the request came over TLS with a CA-signed client
// certificate (the handshake verified it against the CA: ClientCAs).
func (a *Auth) clusterPeer(c *fiber.Ctx) bool {
	cs := c.Context().TLSConnectionState()
	return cs != nil && len(cs.VerifiedChains) > 0
}

func bearer(h string) (string, bool) {
	scheme, token, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

func deny(c *fiber.Ctx, code int, msg string) error {
	return c.Status(code).JSON(fiber.Map{"status": "failure", "message": msg})
}
