package bank

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"

	"github.com/quorumq/quorumq/internal/decode"
)

// Kind is the type byte in front of every operation.
type Kind byte

const (
	KindDeposit  Kind = 1
	KindWithdraw Kind = 2
	// KindTransfer refuses an unknown receiving account. It stays for the entries already
	// in Raft logs and snapshots, which must replay as they were first applied.
	KindTransfer Kind = 3
	// KindTransferOpen is a transfer that opens the receiving account when it is new, as a
	// deposit does: money sent to a new name is that account's first credit.
	KindTransferOpen Kind = 4
)

func (k Kind) String() string {
	switch k {
	case KindDeposit:
		return "deposit"
	case KindWithdraw:
		return "withdraw"
	case KindTransfer, KindTransferOpen:
		return "transfer"
	}
	return fmt.Sprintf("kind(%d)", byte(k))
}

// Op is one bank operation. Amounts are cents; they are checked again inside Apply so a
// bad command from any client is refused the same way on every replica.
type Op struct {
	Kind    Kind
	Account string // the account deposited to, withdrawn from, or transferred from
	To      string // transfers only
	Amount  int64
	// Key, if set, is the client's idempotency key: the bank applies the first op with a
	// key and answers any later one with the same key from its key table.
	Key string
}

// Batch is one Raft entry: the operations an ATM coalesced (group commit), stamped with
// the ATM's session and a sequence number so a retried entry is applied once.
// Session is the ATM id plus a lane; each lane has at most one batch in flight, so
// remembering the last result per session is enough for exactly-once.
type Batch struct {
	Session string
	Seq     uint64
	// Time is the submitting ATM's clock (Unix nanoseconds) when a batch carries keys:
	// the bank's only notion of time, which expires old keys the same way on every
	// replica.
	Time int64
	Ops  []Op
}

// Entry framing: a format version byte, then an entry type byte, then the payload.
// A new payload layout gets a new version or type, a new operation a new Kind; a
// replica that does not know one halts (CheckEntry) rather than refuse it while the
// replicas that know it apply it. A batch without keys is still written as entryBatch,
// so replicas that know only that type agree.
const (
	formatV1 byte = 1
	// entryBatch: session, seq, ops (kind, account, to, amount).
	entryBatch byte = 1
	// entryKeyedBatch: session, seq, time, ops (kind, account, to, amount, key).
	entryKeyedBatch byte = 2
)

// MaxNameLen bounds account names so one entry cannot carry unbounded keys.
const MaxNameLen = 64

// MaxKeyLen bounds idempotency keys (a UUID is 36 characters).
const MaxKeyLen = 128

// Code is the outcome of one operation (or of a whole batch).
type Code byte

const (
	OK Code = iota
	CodeInsufficientFunds
	CodeUnknownAccount
	CodeInvalidAmount
	CodeOverflow
	CodeInvalidName
	CodeSameAccount
	CodeStale
	CodeMalformed
	// CodeKeyReused refuses an op whose idempotency key was used for a different op.
	CodeKeyReused
)

// Refusal errors, one per Code, so callers can errors.Is them (and HTTP can map them).
var (
	ErrInsufficientFunds = errors.New("insufficient funds")
	ErrUnknownAccount    = errors.New("unknown account")
	ErrInvalidAmount     = errors.New("amount must be greater than zero")
	ErrOverflow          = errors.New("balance would overflow")
	ErrInvalidName       = errors.New("invalid account name")
	ErrSameAccount       = errors.New("cannot transfer to the same account")
	ErrStale             = errors.New("stale request (a newer one from this ATM was applied)")
	ErrMalformed         = errors.New("malformed command")
	ErrKeyReused         = errors.New("idempotency key already used for a different operation")
	ErrInvalidKey        = fmt.Errorf("invalid idempotency key: want 1-%d printable ASCII characters", MaxKeyLen)
)

var codeErrs = map[Code]error{
	CodeInsufficientFunds: ErrInsufficientFunds,
	CodeUnknownAccount:    ErrUnknownAccount,
	CodeInvalidAmount:     ErrInvalidAmount,
	CodeOverflow:          ErrOverflow,
	CodeInvalidName:       ErrInvalidName,
	CodeSameAccount:       ErrSameAccount,
	CodeStale:             ErrStale,
	CodeMalformed:         ErrMalformed,
	CodeKeyReused:         ErrKeyReused,
}

// Err is nil for OK and the refusal error otherwise.
func (c Code) Err() error {
	if c == OK {
		return nil
	}
	if err, ok := codeErrs[c]; ok {
		return err
	}
	return fmt.Errorf("%w: unknown result code %d", ErrMalformed, byte(c))
}

// Result is the outcome of one Op: balances after it (or, when refused for lack of
// funds, the balance that was too small).
type Result struct {
	Code      Code
	Balance   int64 // of Account
	ToBalance int64 // of To (transfer only)
}

// BatchResult is what Apply returns for a Batch, encoded. Code is OK unless the whole
// entry was refused (stale or malformed), in which case Results is empty.
type BatchResult struct {
	Code    Code
	Results []Result
}

// ValidName reports why name cannot be an account name, or nil.
func ValidName(name string) error {
	if name == "" || len(name) > MaxNameLen || !utf8.ValidString(name) {
		return fmt.Errorf("%w %q: want 1-%d characters", ErrInvalidName, name, MaxNameLen)
	}
	for _, r := range name {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			return fmt.Errorf("%w %q: no spaces or control characters", ErrInvalidName, name)
		}
	}
	return nil
}

// ValidKey reports why key cannot be an idempotency key, or nil.
func ValidKey(key string) error {
	if key == "" || len(key) > MaxKeyLen {
		return ErrInvalidKey
	}
	for i := range len(key) {
		if key[i] < 0x21 || key[i] > 0x7e {
			return ErrInvalidKey
		}
	}
	return nil
}

// keyed reports whether any op carries an idempotency key.
func (b Batch) keyed() bool {
	for _, op := range b.Ops {
		if op.Key != "" {
			return true
		}
	}
	return false
}

// Encode frames the batch as one Raft entry: entryKeyedBatch if any op has a key,
// else entryBatch.
func (b Batch) Encode() []byte {
	keyed := b.keyed()
	buf := []byte{formatV1, entryBatch}
	if keyed {
		buf[1] = entryKeyedBatch
	}
	buf = appendString(buf, b.Session)
	buf = binary.AppendUvarint(buf, b.Seq)
	if keyed {
		buf = binary.AppendVarint(buf, b.Time)
	}
	buf = binary.AppendUvarint(buf, uint64(len(b.Ops)))
	for _, op := range b.Ops {
		buf = append(buf, byte(op.Kind))
		buf = appendString(buf, op.Account)
		buf = appendString(buf, op.To)
		buf = binary.AppendVarint(buf, op.Amount)
		if keyed {
			buf = appendString(buf, op.Key)
		}
	}
	return buf
}

// DecodeBatch parses an entry written by Encode.
func DecodeBatch(data []byte) (Batch, error) {
	r := decode.NewReader(data)
	if v := r.Byte("format version"); v != formatV1 {
		return Batch{}, fmt.Errorf("%w: unknown format version %d", ErrMalformed, v)
	}
	t := r.Byte("entry type")
	if t != entryBatch && t != entryKeyedBatch {
		return Batch{}, fmt.Errorf("%w: unknown entry type %d", ErrMalformed, t)
	}
	keyed := t == entryKeyedBatch
	var b Batch
	b.Session = string(r.BytesUvarint("session"))
	b.Seq = r.Uvarint("seq")
	if keyed {
		b.Time = r.Varint("time")
	}
	n := r.Uvarint("op count")
	// Each op takes at least 4 bytes, which bounds n before allocating.
	if n > uint64(r.Len())/4 {
		return Batch{}, fmt.Errorf("%w: op count %d exceeds entry size", ErrMalformed, n)
	}
	b.Ops = make([]Op, 0, n)
	for i := uint64(0); i < n && r.Err() == nil; i++ {
		op := Op{Kind: Kind(r.Byte("kind"))}
		op.Account = string(r.BytesUvarint("account"))
		op.To = string(r.BytesUvarint("to"))
		op.Amount = r.Varint("amount")
		if keyed {
			// An empty key is an op of the batch without one; a bad one spoils the entry.
			if op.Key = string(r.BytesUvarint("key")); op.Key != "" && ValidKey(op.Key) != nil {
				return Batch{}, fmt.Errorf("%w: %w", ErrMalformed, ErrInvalidKey)
			}
		}
		b.Ops = append(b.Ops, op)
	}
	if err := finish(&r); err != nil {
		return Batch{}, err
	}
	return b, nil
}

// CheckEntry says whether this binary knows the entry's format version, entry type
// and operation kinds. An entry too garbled to tell is malformed rather than newer,
// and refused (CodeMalformed) the same way on every replica.
func CheckEntry(data []byte) error {
	if len(data) < 2 {
		return nil
	}
	if data[0] != formatV1 {
		return fmt.Errorf("bank: entry format version %d is unknown to this binary", data[0])
	}
	if data[1] != entryBatch && data[1] != entryKeyedBatch {
		return fmt.Errorf("bank: entry type %d is unknown to this binary", data[1])
	}
	b, err := DecodeBatch(data)
	if err != nil {
		return nil
	}
	for _, op := range b.Ops {
		if op.Kind < KindDeposit || op.Kind > KindTransferOpen {
			return fmt.Errorf("bank: operation kind %d is unknown to this binary", byte(op.Kind))
		}
	}
	return nil
}

// Encode frames the result as Apply's return value.
func (br BatchResult) Encode() []byte {
	buf := []byte{formatV1, byte(br.Code)}
	buf = binary.AppendUvarint(buf, uint64(len(br.Results)))
	for _, res := range br.Results {
		buf = append(buf, byte(res.Code))
		buf = binary.AppendVarint(buf, res.Balance)
		buf = binary.AppendVarint(buf, res.ToBalance)
	}
	return buf
}

// DecodeBatchResult parses what Apply returned.
func DecodeBatchResult(data []byte) (BatchResult, error) {
	r := decode.NewReader(data)
	if v := r.Byte("result version"); v != formatV1 {
		return BatchResult{}, fmt.Errorf("%w: unknown result version %d", ErrMalformed, v)
	}
	br := BatchResult{Code: Code(r.Byte("code"))}
	n := r.Uvarint("result count")
	if n > uint64(len(data)) {
		return BatchResult{}, fmt.Errorf("%w: result count %d exceeds size", ErrMalformed, n)
	}
	for i := uint64(0); i < n && r.Err() == nil; i++ {
		res := Result{Code: Code(r.Byte("code"))}
		res.Balance = r.Varint("balance")
		res.ToBalance = r.Varint("to balance")
		br.Results = append(br.Results, res)
	}
	if err := finish(&r); err != nil {
		return BatchResult{}, err
	}
	return br, nil
}

func appendString(buf []byte, s string) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(s)))
	return append(buf, s...)
}

// finish is the decoders' one check: the first error, or bytes left over, as ErrMalformed.
func finish(r *decode.Reader) error {
	if err := r.Done(); err != nil {
		return fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return nil
}
