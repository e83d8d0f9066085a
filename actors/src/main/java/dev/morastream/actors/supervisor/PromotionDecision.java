package dev.morastream.actors.supervisor;

import java.util.Locale;

/**
 * What the supervisor decided about a version. Written to the audit log and to metrics labels as
 * {@link #id()}, a stable lowercase name; {@link #parse} reads every name ever written, so old
 * audit lines still parse.
 */
public enum PromotionDecision {
    /** The gate passed: the candidate now serves. */
    PROMOTED,
    /** An operator pointed the alias at a version (the admin promote endpoint); no gate was applied. */
    PROMOTED_BY_ADMIN,
    /** The alias was moved back to an older version (the admin rollback endpoint). */
    ROLLED_BACK,
    /** The candidate was judged and left out of service. */
    REJECTED,
    /** A newer candidate of the domain arrived before this one was judged. */
    SUPERSEDED,
    /** An admin promotion could not move the alias. */
    PROMOTE_FAILED,
    /** A rollback could not move the alias. */
    ROLLBACK_FAILED;

    /** The audit log's and the metrics' name: {@code promoted}, {@code promoted_by_admin}, {@code rolled_back}... */
    public String id() {
        return name().toLowerCase(Locale.ROOT);
    }

    /** Whether the alias now points at the version decided about (serving follows it). */
    public boolean movesAlias() {
        return this == PROMOTED || this == PROMOTED_BY_ADMIN || this == ROLLED_BACK;
    }

    /** Reads {@link #id()} (any case). */
    public static PromotionDecision parse(String id) {
        if (id == null) {
            throw new IllegalArgumentException("no decision");
        }
        try {
            return valueOf(id.trim().toUpperCase(Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("unknown decision '" + id + "'", e);
        }
    }
}
