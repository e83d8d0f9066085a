package dev.morastream.actors.supervisor;

import java.util.Locale;

/**
 * Why a candidate was not promoted: one code per failed check, used as a metrics label and written
 * to the audit log as {@link #id()}.
 */
public enum RejectReason {
    /** A score of the candidate is NaN or infinite. */
    NON_FINITE,
    /** Memorisation did not improve by the margin. */
    MEMORIZATION,
    /** A downstream set regressed beyond its tolerance (or was not scored). */
    DOWNSTREAM,
    /** The retention loss rose beyond its tolerance. */
    RETENTION,
    /** The KL from the base is above the bound, or was not measured. */
    KL,
    /** The registry, the evaluator or the alias move failed. */
    ERROR,
    /** A newer candidate of the domain replaced it in the queue. */
    SUPERSEDED;

    public String id() {
        return name().toLowerCase(Locale.ROOT);
    }

    public static RejectReason parse(String id) {
        try {
            return valueOf(id.trim().toUpperCase(Locale.ROOT));
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("unknown reason code '" + id + "'", e);
        }
    }
}
