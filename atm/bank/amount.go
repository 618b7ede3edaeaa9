package bank

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Amount parsing errors; each names what the user typed wrong.
var (
	ErrAmountSyntax    = errors.New("is not a decimal like 12, 12.5 or 12.50")
	ErrAmountNegative  = errors.New("is negative")
	ErrAmountDecimals  = errors.New("has more than two decimal places")
	ErrAmountTooLarge  = errors.New("is too large")
	ErrAmountZero      = errors.New("must be greater than zero")
	maxWhole           = uint64(math.MaxInt64 / 100)
	maxCentsAboveWhole = uint64(math.MaxInt64 % 100)
)

// ParseAmount turns a decimal with at most two places ("12", "12.5", "12.50") into
// positive cents. Money is integer cents everywhere so that no float ever rounds a balance.
func ParseAmount(s string) (int64, error) {
	s = strings.TrimSpace(s)
	wrap := func(err error) error { return fmt.Errorf("amount %q %w", s, err) }
	if strings.HasPrefix(s, "-") {
		return 0, wrap(ErrAmountNegative)
	}
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" || !allDigits(whole) || (hasDot && (frac == "" || !allDigits(frac))) {
		return 0, wrap(ErrAmountSyntax)
	}
	if len(frac) > 2 {
		return 0, wrap(ErrAmountDecimals)
	}
	whole = strings.TrimLeft(whole, "0")
	if len(whole) > 19 {
		return 0, wrap(ErrAmountTooLarge)
	}
	var w uint64
	for _, c := range whole {
		w = w*10 + uint64(c-'0')
	}
	var cents uint64
	for i := 0; i < 2; i++ {
		cents *= 10
		if i < len(frac) {
			cents += uint64(frac[i] - '0')
		}
	}
	if w > maxWhole || (w == maxWhole && cents > maxCentsAboveWhole) {
		return 0, wrap(ErrAmountTooLarge)
	}
	total := int64(w*100 + cents)
	if total == 0 {
		return 0, wrap(ErrAmountZero)
	}
	return total, nil
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// FormatAmount renders cents as a decimal with exactly two places ("12.50").
func FormatAmount(cents int64) string {
	sign := ""
	u := uint64(cents)
	if cents < 0 {
		sign = "-"
		u = uint64(-(cents + 1)) + 1 // safe for MinInt64
	}
	return fmt.Sprintf("%s%d.%02d", sign, u/100, u%100)
}
