/* quality.mod - the placement problem of scripts/bench/quality as an integer program (GNU
 * MathProg, solved with glpsol). Data: inst.dat written by bench_quality (the requests, the
 * packages and the feasible pairs the matcher's hard constraints allow) and a stage file.
 *
 *   x[r,p] = 1: request r gets its units on package p (only feasible pairs exist)
 *   each request at most once; a package's units are not exceeded
 *   stage 1: maximise accelerators placed
 *   stage 2: minimise the cost (units * price per unit-hour) among placements with at least
 *            floor_acc accelerators (lexicographic: floor_acc = the stage-1 optimum)
 */
set R;
set P;
param acc{R} >= 0;
param units{R} >= 1, integer;
param cap{P} >= 0, integer;
set F within R cross P;
param cost{F} >= 0;
param stage integer, in 1 .. 2;
param floor_acc >= 0, default 0;

var x{F} binary;

maximize objective: if stage = 1 then sum{(r, p) in F} acc[r] * x[r, p]
                    else -sum{(r, p) in F} cost[r, p] * x[r, p];

s.t. once{r in R}: sum{p in P: (r, p) in F} x[r, p] <= 1;
s.t. capacity{p in P}: sum{r in R: (r, p) in F} units[r] * x[r, p] <= cap[p];
s.t. enough: sum{(r, p) in F} acc[r] * x[r, p] >= floor_acc;

solve;

printf "RESULT accelerators=%d cost=%d placed=%d\n",
    sum{(r, p) in F} acc[r] * x[r, p], sum{(r, p) in F} cost[r, p] * x[r, p],
    sum{(r, p) in F} x[r, p];
end;
