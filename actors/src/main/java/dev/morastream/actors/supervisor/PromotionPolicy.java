package dev.morastream.actors.supervisor;

import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;

/**
 * The promotion gate: a candidate replaces the adapter in service only when its memorisation
 * improves by at least {@code memorizationMargin} (character accuracy on trained facts, absolute;
 * for a domain of plain text, with no facts to answer, the loss on trained text, relatively) and no
 * downstream set and no retention score regresses beyond its tolerance. A candidate with any
 * non-finite score is never promoted.
 *
 * @param memorizationMargin least gain in memorisation character accuracy (e.g. 0.02)
 * @param downstreamTolerance largest drop of any downstream accuracy (absolute, e.g. 0.02)
 * @param retentionTolerance largest relative rise of the retention loss (e.g. 0.02 = 2%)
 */
public record PromotionPolicy(double memorizationMargin, double downstreamTolerance, double retentionTolerance) {
    public PromotionPolicy {
        if (memorizationMargin < 0 || downstreamTolerance < 0 || retentionTolerance < 0) {
            throw new IllegalArgumentException("margins and tolerances must not be negative");
        }
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

    /**
     * @param candidate the new checkpoint's scores
     * @param serving the scores of the adapter in service (or of the base model when none is)
     */
    public Decision decide(Scores candidate, Scores serving) {
        List<String> why = new ArrayList<>();
        List<RejectReason> codes = new ArrayList<>();
        if (!candidate.finite()) {
            why.add("non-finite score in candidate");
            return new Decision(false, why, List.of(RejectReason.NON_FINITE));
        }
        boolean ok = true;
        if (Double.isFinite(candidate.memorizationCharAcc()) && Double.isFinite(serving.memorizationCharAcc())) {
            double gain = candidate.memorizationCharAcc() - serving.memorizationCharAcc();
            if (gain < memorizationMargin) {
                ok = false;
                codes.add(RejectReason.MEMORIZATION);
                why.add(String.format(Locale.ROOT, "memorization char_acc gain %.4f below margin %.4f", gain, memorizationMargin));
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
        for (Map.Entry<String, Double> e : serving.downstream().entrySet()) {
            Double c = candidate.downstream().get(e.getKey());
            if (c == null) {
                ok = false;
                codes.add(RejectReason.DOWNSTREAM);
                why.add("downstream set '" + e.getKey() + "' not scored for the candidate");
            } else if (e.getValue() - c > downstreamTolerance) {
                ok = false;
                codes.add(RejectReason.DOWNSTREAM);
                why.add(String.format(Locale.ROOT, "downstream '%s' regressed %.4f -> %.4f (tolerance %.4f)", e.getKey(),
                        e.getValue(), c, downstreamTolerance));
            }
        }
        double limit = serving.retentionLoss() * (1 + retentionTolerance);
        if (candidate.retentionLoss() > limit) {
            ok = false;
            codes.add(RejectReason.RETENTION);
            why.add(String.format(Locale.ROOT, "retention loss regressed %.4f -> %.4f (tolerance %.1f%%)", serving.retentionLoss(),
                    candidate.retentionLoss(), retentionTolerance * 100));
        }
        return new Decision(ok, why, ok ? List.of() : codes.stream().distinct().toList());
    }
}
