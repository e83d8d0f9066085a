package dev.morastream.streams.records;

import java.lang.invoke.MethodHandles;
import java.lang.invoke.VarHandle;
import java.nio.ByteOrder;

/**
 * Strict UTF-8 on byte arrays, as the JDK's decoder with {@code REPORT} reads it (the well-formed
 * sequences of the Unicode standard, table 3-7: no overlong forms, no surrogates, nothing above
 * U+10FFFF), without decoding to a {@code String}.
 */
final class Utf8 {
    private static final VarHandle LONGS = MethodHandles.byteArrayViewVarHandle(long[].class, ByteOrder.LITTLE_ENDIAN);
    private static final long ONES = 0x0101010101010101L;
    private static final long HIGHS = 0x8080808080808080L;

    private Utf8() {}

    /**
     * The index of the first byte in {@code b[p, to)} that is not plain, or {@code to}: plain is
     * printable ASCII or space ({@code 0x20..0x7e}) other than {@code "} and {@code \}. Eight bytes
     * at a time (a byte is flagged when it is {@code >= 0x80}, {@code < 0x20}, {@code 0x7f},
     * {@code "} or {@code \}; the lowest flag of each test is exact, so the lowest of all is the
     * first such byte).
     */
    static int plainRun(byte[] b, int p, int to) {
        while (p + Long.BYTES <= to) {
            long w = (long) LONGS.get(b, p);
            long flags = (w | ((w - 0x2020202020202020L) & ~w) | zero(w ^ 0x2222222222222222L) | zero(w ^ 0x5c5c5c5c5c5c5c5cL)
                    | zero(w ^ 0x7f7f7f7f7f7f7f7fL)) & HIGHS;
            if (flags != 0) {
                return p + (Long.numberOfTrailingZeros(flags) >>> 3);
            }
            p += Long.BYTES;
        }
        while (p < to && plain(b[p])) {
            p++;
        }
        return p;
    }

    /** High bit set in each byte of {@code x} that is zero (the lowest one exact). */
    private static long zero(long x) {
        return (x - ONES) & ~x;
    }

    static boolean plain(byte c) {
        return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
    }

    /** Whether {@code b[from, to)} is well-formed UTF-8. */
    static boolean valid(byte[] b, int from, int to) {
        int p = from;
        while (p < to) {
            if (b[p] >= 0) {
                p++;
            } else {
                int len = sequence(b, p, to);
                if (len < 0) {
                    return false;
                }
                p += len;
            }
        }
        return true;
    }

    /** The length of the well-formed multi-byte sequence at {@code p} (its lead byte is not ASCII), or -1. */
    static int sequence(byte[] b, int p, int to) {
        int c = b[p] & 0xff;
        if (c < 0xc2 || c > 0xf4) {
            return -1; // a continuation byte, an overlong lead (C0, C1), or beyond U+10FFFF
        }
        if (c < 0xe0) {
            return p + 1 < to && cont(b[p + 1]) ? 2 : -1;
        }
        if (p + (c < 0xf0 ? 3 : 4) > to) {
            return -1;
        }
        int c1 = b[p + 1] & 0xff;
        if (c < 0xf0) {
            boolean ok1 = c == 0xe0 ? c1 >= 0xa0 && c1 <= 0xbf : c == 0xed ? c1 >= 0x80 && c1 <= 0x9f : cont(b[p + 1]);
            return ok1 && cont(b[p + 2]) ? 3 : -1;
        }
        boolean ok1 = c == 0xf0 ? c1 >= 0x90 && c1 <= 0xbf : c == 0xf4 ? c1 >= 0x80 && c1 <= 0x8f : cont(b[p + 1]);
        return ok1 && cont(b[p + 2]) && cont(b[p + 3]) ? 4 : -1;
    }

    /** The code point of the well-formed sequence of {@code len} bytes at {@code p}. */
    static int codePoint(byte[] b, int p, int len) {
        return switch (len) {
            case 1 -> b[p];
            case 2 -> ((b[p] & 0x1f) << 6) | (b[p + 1] & 0x3f);
            case 3 -> ((b[p] & 0x0f) << 12) | ((b[p + 1] & 0x3f) << 6) | (b[p + 2] & 0x3f);
            default -> ((b[p] & 0x07) << 18) | ((b[p + 1] & 0x3f) << 12) | ((b[p + 2] & 0x3f) << 6) | (b[p + 3] & 0x3f);
        };
    }

    /** Writes the UTF-8 bytes of {@code cp} (a scalar value) from {@code at}; returns the index after them. */
    static int put(int cp, byte[] out, int at) {
        if (cp < 0x80) {
            out[at++] = (byte) cp;
        } else if (cp < 0x800) {
            out[at++] = (byte) (0xc0 | (cp >> 6));
            out[at++] = (byte) (0x80 | (cp & 0x3f));
        } else if (cp < 0x10000) {
            out[at++] = (byte) (0xe0 | (cp >> 12));
            out[at++] = (byte) (0x80 | ((cp >> 6) & 0x3f));
            out[at++] = (byte) (0x80 | (cp & 0x3f));
        } else {
            out[at++] = (byte) (0xf0 | (cp >> 18));
            out[at++] = (byte) (0x80 | ((cp >> 12) & 0x3f));
            out[at++] = (byte) (0x80 | ((cp >> 6) & 0x3f));
            out[at++] = (byte) (0x80 | (cp & 0x3f));
        }
        return at;
    }

    private static boolean cont(byte x) {
        return (x & 0xc0) == 0x80;
    }
}
