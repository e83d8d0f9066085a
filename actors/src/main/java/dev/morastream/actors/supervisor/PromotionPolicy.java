package dev.morastream.actors.supervisor;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The promotion gate: a candidate replaces the adapter in service only when its memorisation
 * improves by at least {@code memorizationMargin} over the adapter in service (character accuracy on
 * trained facts, absolute, or near perfect memorisation by half of what the adapter in service
 * leaves to 1.0, so that a version at 0.96 can still be replaced by a better one; for a domain of
 * plain text, with no facts to answer, the loss on trained text, relatively), no downstream set drops by more than {@code downstreamTolerance} against the
 * adapter in service <em>or against the base model</em> (so that small regressions cannot add up
 * over many promotions), the retention loss rises by at most {@code retentionTolerance} against
 * either, and the mean KL from the base is at most {@code maxKl}. A candidate with any non-finite
 * score, or a NaN KL when a bound is set, is never promoted.
 *
 * @param memorizationMargin least gain in memorisation character accuracy (e.g. 0.05)
 * @param downstreamTolerance largest drop of any downstream accuracy (absolute, e.g. 0.03)
 * @param retentionTolerance largest relative rise of the retention loss (e.g. 0.02 = 2%)
 * @param maxKl largest mean KL(base || candidate) on the evaluator's prompt set; {@code
 *     Double.POSITIVE_INFINITY}: not judged
 */
public record PromotionPolicy(double memorizationMargin, double downstreamTolerance, double retentionTolerance, double maxKl) {
    public PromotionPolicy {
        if (memorizationMargin < 0 || downstreamTolerance < 0 || retentionTolerance < 0) {
            throw new IllegalArgumentException("margins and tolerances must not be negative");
        }
        if (!(maxKl > 0)) {
            throw new IllegalArgumentException("max-kl must be positive (infinite: not judged), got " + maxKl);
        }
    }

    /** Without a KL bound. */
    public PromotionPolicy(double memorizationMargin, double downstreamTolerance, double retentionTolerance) {
        this(memorizationMargin, downstreamTolerance, retentionTolerance, Double.POSITIVE_INFINITY);
    }

    /**
     * The outcome, with every reason that decided it.
     *
     * @param codes for a rejection, one code per failed check (empty for a promotion)
     */
    public record Decision(boolean promote, List<String> reasons, List<RejectReason> codes) {
        public Decision {
            reasons = List.copyOf(reasons);
            codes = List.copyOf(codes);
        }
    }

    /** {@link #decide(Scores, Scores, Scores)} with the adapter in service as the only reference. */
    public Decision decide(Scores candidate, Scores serving) {
        return decide(candidate, serving, serving);
    }

    /**
     * @param candidate the new checkpoint's scores
     * @param serving the scores of the adapter in service (or of the base model when none is)
     * @param base the base model's scores on the same sets
     */
    public Decision decide(Scores candidate, Scores serving, Scores base) {
        List<String> why = new ArrayList<>();
        List<RejectReason> codes = new ArrayList<>();
        if (!candidate.finite()) {
            why.add("non-finite score in candidate");
            return new Decision(false, why, List.of(RejectReason.NON_FINITE));
        }
        boolean ok = true;
        if (Double.isFinite(candidate.memorizationCharAcc()) && Double.isFinite(serving.memorizationCharAcc())) {
            double gain = candidate.memorizationCharAcc() - serving.memorizationCharAcc();
            double needed = Math.min(memorizationMargin, (1 - serving.memorizationCharAcc()) / 2);
            if (!(gain >= needed) || gain <= 0) {
                ok = false;
                codes.add(RejectReason.MEMORIZATION);
                why.add(String.format(Locale.ROOT, "memorization char_acc gain %.4f below margin %.4f", gain, needed));
            } else {
                why.add(String.format(Locale.ROOT, "memorization char_acc +%.4f", gain));
            }
        } else {
            // no prompt/completion facts trained (a text domain): memorisation is the loss on trained text,
            // which must fall by the margin, relatively
            double gain = (serving.memorizationLoss() - candidate.memorizationLoss()) / serving.memorizationLoss();
            if (!(gain >= memorizationMargin)) {
                ok = false;
                codes.add(RejectReason.MEMORIZATION);
                why.add(String.format(Locale.ROOT, "memorization loss fell %.1f%%, below the margin %.1f%% (no facts to answer)", gain * 100,
                        memorizationMargin * 100));
            } else {
                why.add(String.format(Locale.ROOT, "memorization loss -%.1f%% (no facts to answer)", gain * 100));
            }
        }
        ok &= downstream(candidate, serving, "serving", why, codes);
        if (base != serving) {
            ok &= downstream(candidate, base, "base", why, codes);
        }
        for (Scores ref : base != serving ? List.of(serving, base) : List.of(serving)) {
            double limit = ref.retentionLoss() * (1 + retentionTolerance);
            if (candidate.retentionLoss() > limit) {
                ok = false;
                codes.add(RejectReason.RETENTION);
                why.add(String.format(Locale.ROOT, "retention loss regressed %.4f (%s) -> %.4f (tolerance %.1f%%)", ref.retentionLoss(),
                        ref == base ? "base" : "serving", candidate.retentionLoss(), retentionTolerance * 100));
            }
        }
        if (Double.isFinite(maxKl)) {
            if (Double.isNaN(candidate.klToBase())) {
                ok = false;
                codes.add(RejectReason.KL);
                why.add("KL to the base not measured (NaN) while max-kl is " + maxKl);
            } else if (candidate.klToBase() > maxKl) {
                ok = false;
                codes.add(RejectReason.KL);
                why.add(String.format(Locale.ROOT, "KL to the base %.4f above max-kl %.4f", candidate.klToBase(), maxKl));
            } else {
                why.add(String.format(Locale.ROOT, "KL to the base %.4f", candidate.klToBase()));
            }
        }
        return new Decision(ok, why, ok ? List.of() : codes.stream().distinct().toList());
    }

    private boolean downstream(Scores candidate, Scores ref, String refName, List<String> why, List<RejectReason> codes) {
        boolean ok = true;
        for (Map.Entry<String, Double> e : ref.downstream().entrySet()) {
            Double c = candidate.downstream().get(e.getKey());
            if (c == null) {
                ok = false;
                codes.add(RejectReason.DOWNSTREAM);
                why.add("downstream set '" + e.getKey() + "' not scored for the candidate");
            } else if (e.getValue() - c > downstreamTolerance) {
                ok = false;
                codes.add(RejectReason.DOWNSTREAM);
                why.add(String.format(Locale.ROOT, "downstream '%s' regressed %.4f (%s) -> %.4f (tolerance %.4f)", e.getKey(),
                        e.getValue(), refName, c, downstreamTolerance));
            }
        }
        return ok;
    }
}
