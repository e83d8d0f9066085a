package dev.morastream.models.adapters;

import java.util.Locale;

/**
 * How MoRA compresses the input to {@code R} numbers and decompresses {@code R} numbers to the
 * output (MORA_SPEC.md; paper section 3, Table 4). {@link #referenceType()} is the {@code
 * mora_type} of the authors' PEFT fork, where one exists.
 */
public enum MoraVariant {
    /** Sum of wrap-padded groups in, tiling out (paper Eq. 6; for large r). */
    SHARING(1),
    /** Contiguous groups in, repeat-interleave out (used by ReMoRA). */
    CONTIGUOUS(2),
    /** Contiguous-group compression, tiling decompression. */
    TYPE3(3),
    /** Sharing compression, repeat-interleave decompression. */
    TYPE4(4),
    /** Blocks rotated RoPE-style, then one shared M (paper Eq. 9; for small r). */
    ROTATION(6),
    /** Rotation with every angle zero: block-diagonal M repeated (paper Eq. 8). */
    DECOUPLING(6),
    /** First R inputs in, first R outputs out (paper Eq. 4/5; the weakest). */
    TRUNCATION(-1);

    private final int referenceType;

    MoraVariant(int referenceType) {
        this.referenceType = referenceType;
    }

    /** The reference code's {@code mora_type}, or -1 where it has none. */
    public int referenceType() {
        return referenceType;
    }

    /** Whether R is made even (rotation pairs dimensions). */
    public boolean evenRank() {
        return this == ROTATION || this == DECOUPLING;
    }

    public static MoraVariant parse(String s) {
        String k = s.trim().toUpperCase(Locale.ROOT).replace('-', '_');
        return switch (k) {
            case "1" -> SHARING;
            case "2" -> CONTIGUOUS;
            case "3" -> TYPE3;
            case "4" -> TYPE4;
            case "6" -> ROTATION;
            default -> valueOf(k);
        };
    }

    public String id() {
        return name().toLowerCase(Locale.ROOT);
    }
}
