package bank

import (
	"errors"
	"math"
	"testing"
)

func TestParseAmount(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr error
	}{
		{"12", 1200, nil},
		{"12.5", 1250, nil},
		{"12.50", 1250, nil},
		{"0.01", 1, nil},
		{"007.10", 710, nil},
		{" 3 ", 300, nil},
		{"92233720368547758.07", math.MaxInt64, nil},
		{"", 0, ErrAmountSyntax},
		{"abc", 0, ErrAmountSyntax},
		{"12abc", 0, ErrAmountSyntax},
		{"1,000", 0, ErrAmountSyntax},
		{"1e3", 0, ErrAmountSyntax},
		{".5", 0, ErrAmountSyntax},
		{"5.", 0, ErrAmountSyntax},
		{"+5", 0, ErrAmountSyntax},
		{"1.2.3", 0, ErrAmountSyntax},
		{"NaN", 0, ErrAmountSyntax},
		{"-5", 0, ErrAmountNegative},
		{"-0.01", 0, ErrAmountNegative},
		{"12.345", 0, ErrAmountDecimals},
		{"0.001", 0, ErrAmountDecimals},
		{"0", 0, ErrAmountZero},
		{"0.00", 0, ErrAmountZero},
		{"92233720368547758.08", 0, ErrAmountTooLarge},
		{"92233720368547759", 0, ErrAmountTooLarge},
		{"99999999999999999999999999", 0, ErrAmountTooLarge},
	}
	for _, tt := range tests {
		got, err := ParseAmount(tt.in)
		if !errors.Is(err, tt.wantErr) || got != tt.want {
			t.Errorf("ParseAmount(%q) = %d, %v; want %d, %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

func TestFormatAmount(t *testing.T) {
	tests := map[int64]string{0: "0.00", 5: "0.05", 1250: "12.50", -1250: "-12.50", math.MaxInt64: "92233720368547758.07", math.MinInt64: "-92233720368547758.08"}
	for in, want := range tests {
		if got := FormatAmount(in); got != want {
			t.Errorf("FormatAmount(%d) = %q, want %q", in, got, want)
		}
	}
}
