package transport

import (
	"errors"
	"flag"
	"os"
)

// Environment variables a client's password and token may come from
// (WithEnvSecrets), so they stay off command lines.
const (
	EnvPassword = "RAFTMQ_PASSWORD"
	EnvToken    = "RAFTMQ_TOKEN"
)

// RegisterClientFlags registers a NATS client's credential and TLS flags
// on fs, writing into c: --creds, --user, --password, --token, --tls-ca,
// --tls-cert and --tls-key. Call WithEnvSecrets after parsing.
func (c *ConnectConfig) RegisterClientFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.CredentialsFile, "creds", "", "NATS credentials `file` (JWT and nkey seed)")
	fs.StringVar(&c.User, "user", "", "NATS `user`")
	fs.StringVar(&c.Password, "password", "", "NATS `password` (with --user; $"+EnvPassword+" when unset)")
	fs.StringVar(&c.Token, "token", "", "NATS `token` ($"+EnvToken+" when neither it, --user nor --creds is given)")
	fs.StringVar(&c.TLSCAFile, "tls-ca", "", "CA `file` to verify the NATS server's certificate (TLS)")
	fs.StringVar(&c.TLSCertFile, "tls-cert", "", "client certificate `file` for NATS TLS (with --tls-key)")
	fs.StringVar(&c.TLSKeyFile, "tls-key", "", "client key `file` for NATS TLS (with --tls-cert)")
}

// WithEnvSecrets returns c with the password from $RAFTMQ_PASSWORD when a
// user has none, and the token from $RAFTMQ_TOKEN when no other
// credentials are given (a token is a credential an open server refuses),
// after checking that one kind of credentials at most is given; then
// Validate.
func (c ConnectConfig) WithEnvSecrets() (ConnectConfig, error) {
	if c.CredentialsFile != "" && (c.User != "" || c.Token != "") {
		return c, errors.New("transport: --creds, --user and --token are alternatives: give one")
	}
	if c.User != "" && c.Password == "" {
		c.Password = os.Getenv(EnvPassword)
	}
	if c.User == "" && c.Token == "" && c.CredentialsFile == "" {
		c.Token = os.Getenv(EnvToken)
	}
	return c, c.Validate()
}
