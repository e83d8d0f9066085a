package dev.morastream.actors.supervisor;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

class PromotionPolicyTest {
    static final PromotionPolicy P = new PromotionPolicy(0.02, 0.02, 0.02);
    static final Scores SERVING = new Scores(0.40, 1.5, Map.of("capitals", 0.78, "arithmetic", 0.08), 0.49);

    @Test
    void promotesWhenMemorisationImprovesAndNothingRegresses() {
        PromotionPolicy.Decision d = P.decide(new Scores(0.55, 1.1, Map.of("capitals", 0.77, "arithmetic", 0.08), 0.495), SERVING);
        assertTrue(d.promote(), d.reasons().toString());
        assertEquals(List.of(), d.codes());
    }

    @Test
    void rejectsTooSmallAGain() {
        PromotionPolicy.Decision d = P.decide(new Scores(0.41, 1.4, SERVING.downstream(), 0.49), SERVING);
        assertFalse(d.promote());
        assertTrue(d.reasons().get(0).contains("below margin"), d.reasons().toString());
        assertEquals(List.of(RejectReason.MEMORIZATION), d.codes());
    }

    @Test
    void rejectsADownstreamRegression() {
        PromotionPolicy.Decision d = P.decide(new Scores(0.9, 0.5, Map.of("capitals", 0.70, "arithmetic", 0.08), 0.49), SERVING);
        assertFalse(d.promote());
        assertTrue(d.reasons().stream().anyMatch(r -> r.contains("downstream 'capitals' regressed")), d.reasons().toString());
        assertEquals(List.of(RejectReason.DOWNSTREAM), d.codes());
    }

    @Test
    void rejectsARetentionRegression() {
        PromotionPolicy.Decision d = P.decide(new Scores(0.9, 0.5, SERVING.downstream(), 0.52), SERVING);
        assertFalse(d.promote());
        assertTrue(d.reasons().stream().anyMatch(r -> r.contains("retention loss regressed")), d.reasons().toString());
        assertEquals(List.of(RejectReason.RETENTION), d.codes());
    }

    @Test
    void neverPromotesANonFiniteCandidate() {
        assertFalse(P.decide(new Scores(1.0, Double.NaN, SERVING.downstream(), 0.4), SERVING).promote());
        assertEquals(List.of(RejectReason.NON_FINITE), P.decide(new Scores(1.0, Double.NaN, SERVING.downstream(), 0.4), SERVING).codes());
        assertFalse(P.decide(new Scores(1.0, 0.1, Map.of("capitals", Double.POSITIVE_INFINITY, "arithmetic", 0.1), 0.4), SERVING).promote());
    }

    @Test
    void aTextDomainWithoutFactsIsJudgedOnItsTrainedTextLoss() {
        Scores serving = new Scores(Double.NaN, 1.0, SERVING.downstream(), 0.49);
        PromotionPolicy.Decision better = P.decide(new Scores(Double.NaN, 0.9, SERVING.downstream(), 0.49), serving);
        assertTrue(better.promote(), better.reasons().toString());
        PromotionPolicy.Decision same = P.decide(new Scores(Double.NaN, 0.99, SERVING.downstream(), 0.49), serving);
        assertFalse(same.promote());
        assertEquals(List.of(RejectReason.MEMORIZATION), same.codes());
        // a NaN loss is broken weights, not "no facts"
        assertEquals(List.of(RejectReason.NON_FINITE), P.decide(new Scores(Double.NaN, Double.NaN, SERVING.downstream(), 0.49), serving).codes());
    }

    @Test
    void aMissingDownstreamScoreIsNotAPass() {
        assertFalse(P.decide(new Scores(0.9, 0.5, Map.of("capitals", 0.8), 0.49), SERVING).promote());
    }

    /** The shipped defaults: 0.05 / 0.03 / 2% / max KL 0.1. */
    static final PromotionPolicy TIGHT = new PromotionPolicy(0.05, 0.03, 0.02, 0.1);
    static final Scores BASE = new Scores(0.28, 2.0, Map.of("capitals", 0.80, "jobs", 0.46), 0.511, Double.NaN, Double.NaN, 0.0);

    static Scores scores(double mem, double capitals, double kl) {
        return new Scores(mem, 1.0, Map.of("capitals", capitals, "jobs", 0.46), 0.511, Double.NaN, Double.NaN, kl);
    }

    @Test
    void regressionsCannotAccumulateOverPromotions() {
        // the version in service already lost 0.02 of capitals against the base (within tolerance)
        Scores serving = scores(0.70, 0.78, 0.03);
        assertTrue(TIGHT.decide(serving, BASE, BASE).promote());
        // the candidate loses 0.02 more: within 0.03 of the version in service, 0.04 below the base
        Scores candidate = scores(0.90, 0.76, 0.04);
        assertTrue(TIGHT.decide(candidate, serving).promote(), "against the version in service alone it would pass");
        PromotionPolicy.Decision d = TIGHT.decide(candidate, serving, BASE);
        assertFalse(d.promote(), d.reasons().toString());
        assertEquals(List.of(RejectReason.DOWNSTREAM), d.codes());
        assertTrue(d.reasons().stream().anyMatch(r -> r.contains("'capitals'") && r.contains("(base)")), d.reasons().toString());
    }

    @Test
    void retentionIsJudgedAgainstTheBaseToo() {
        Scores serving = new Scores(0.70, 1.0, BASE.downstream(), 0.519, Double.NaN, Double.NaN, 0.02); // +1.6% of the base
        Scores candidate = new Scores(0.90, 1.0, BASE.downstream(), 0.527, Double.NaN, Double.NaN, 0.02); // +1.5% of serving, +3.1% of base
        assertEquals(List.of(RejectReason.RETENTION), TIGHT.decide(candidate, serving, BASE).codes());
    }

    @Test
    void klAboveTheBoundOrNotMeasuredIsRejected() {
        assertTrue(TIGHT.decide(scores(0.90, 0.80, 0.09), BASE, BASE).promote());
        PromotionPolicy.Decision high = TIGHT.decide(scores(0.90, 0.80, 0.11), BASE, BASE);
        assertEquals(List.of(RejectReason.KL), high.codes(), high.reasons().toString());
        PromotionPolicy.Decision nan = TIGHT.decide(scores(0.90, 0.80, Double.NaN), BASE, BASE);
        assertFalse(nan.promote());
        assertEquals(List.of(RejectReason.KL), nan.codes(), nan.reasons().toString());
        // no bound: KL not judged, NaN included
        assertTrue(new PromotionPolicy(0.05, 0.03, 0.02).decide(scores(0.90, 0.80, Double.NaN), BASE, BASE).promote());
    }

    @Test
    void nearPerfectMemorisationNeedsHalfOfWhatIsLeft() {
        Scores serving = scores(0.94, 0.80, 0.05);
        assertFalse(TIGHT.decide(scores(0.96, 0.80, 0.05), serving, BASE).promote(), "+0.02 is less than half of 0.06");
        assertTrue(TIGHT.decide(scores(0.97, 0.80, 0.05), serving, BASE).promote(), "+0.03 is half of 0.06");
        assertEquals(List.of(RejectReason.MEMORIZATION), TIGHT.decide(scores(1.0, 0.80, 0.05), scores(1.0, 0.80, 0.05), BASE).codes(),
                "nothing to gain over a perfect version");
        assertFalse(TIGHT.decide(scores(0.60, 0.80, 0.05), scores(0.57, 0.80, 0.05), BASE).promote(), "far from perfect: the margin");
    }
}
