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
}
