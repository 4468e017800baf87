#!/usr/bin/env python3
"""Long Josephson junction: the perturbed sine-Gordon equation, solved on a grid.

    phi_tt + alpha * phi_t - phi_xx + sin(phi) = gamma,   0 <= x <= L

in the usual normalised units (length in Josephson lengths, time in inverse plasma frequencies).
Boundaries: ``open`` (an inline junction in an external field h: phi_x = h at both ends) or
``annular`` (a ring: phi(x + L) = phi(x) + 2 pi n with n trapped fluxons, which stay trapped).
Fluxons (2 pi kinks) start evenly spaced with the given velocity.

The scheme is the explicit leapfrog with central damping, second order in space and time; it is
stable for time_step < grid spacing (L / points). Every ``record_every`` steps one row goes to
``ljj.dat`` in the working folder: time and 11 observables, whitespace-separated, under a comment
header naming the columns (the plotting app reads the last comment line as column names):

    t  V_mean  fluxons  E_kinetic  E_gradient  E_potential  E_total  P_dissipated  P_bias
       phi_mean  V_left  V_right

V is phi_t (the voltage); E_* are the energy integrals (kinetic 1/2 phi_t^2, gradient
1/2 phi_x^2, potential 1 - cos phi); P_dissipated = alpha * int phi_t^2 and P_bias =
gamma * int phi_t are the power lost to damping and fed by the bias, so without bias and with
damping E_total can only decrease. Progress goes to stdout; bad input exits with status 2 and a
message on stderr, a numerical blow-up with status 3. Needs numpy only.
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np

COLUMNS = ["t", "V_mean", "fluxons", "E_kinetic", "E_gradient", "E_potential", "E_total",
           "P_dissipated", "P_bias", "phi_mean", "V_left", "V_right"]
OUTPUT = "ljj.dat"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Long Josephson junction (perturbed sine-Gordon) simulation.")
    parser.add_argument("--length", type=float, default=20.0, help="junction length L (Josephson lengths)")
    parser.add_argument("--boundary", choices=["open", "annular"], default="open")
    parser.add_argument("--field", type=float, default=0.0, help="external field h (open boundary only)")
    parser.add_argument("--fluxons", type=int, default=1, help="fluxons at the start (trapped when annular)")
    parser.add_argument("--velocity", type=float, default=0.0, help="initial fluxon velocity, |v| < 1")
    parser.add_argument("--alpha", type=float, default=0.05, help="damping")
    parser.add_argument("--gamma", type=float, default=0.0, help="bias current")
    parser.add_argument("--points", type=int, default=400, help="grid points")
    parser.add_argument("--time-step", type=float, default=0.02)
    parser.add_argument("--steps", type=int, default=10000, help="time steps")
    parser.add_argument("--record-every", type=int, default=50, help="steps between output rows")
    args = parser.parse_args(argv)
    numbers = {k: v for k, v in vars(args).items() if isinstance(v, float)}
    for name, value in numbers.items():
        if not math.isfinite(value):
            parser.error(f"--{name.replace('_', '-')} must be a finite number")
    problems = [
        (args.length <= 0, "--length must be positive"),
        (args.points < 8, "--points must be at least 8"),
        (args.time_step <= 0, "--time-step must be positive"),
        (args.steps < 1 or args.record_every < 1, "--steps and --record-every must be at least 1"),
        (args.alpha < 0, "--alpha must not be negative"),
        (abs(args.velocity) >= 1, "--velocity must be between -1 and 1 (the speed of light is 1)"),
        (args.fluxons < 0, "--fluxons must not be negative"),
        (args.boundary == "annular" and args.field != 0, "--field applies to the open boundary only"),
    ]
    for bad, message in problems:
        if bad:
            parser.error(message)
    dx = args.length / args.points
    if args.time_step >= dx:
        parser.error(f"--time-step {args.time_step} must be below the grid spacing {dx:.6g} "
                     "(length / points) for the scheme to be stable")
    return args


class Junction:
    """The grid, the boundary and one leapfrog step."""

    def __init__(self, args: argparse.Namespace):
        self.a = args
        self.n = args.points
        self.dx = args.length / args.points
        self.x = (np.arange(self.n) + 0.5) * self.dx  # cell centres: the open ends sit on cell faces
        self.twist = 2 * math.pi * args.fluxons if args.boundary == "annular" else 0.0

    def initial(self) -> tuple[np.ndarray, np.ndarray]:
        """phi and phi_t at t = 0: evenly spaced kinks moving at the given velocity."""
        a = self.a
        phi = np.zeros(self.n)
        phi_t = np.zeros(self.n)
        if a.boundary == "open":
            phi += a.field * (self.x - a.length / 2)  # the Meissner profile's slope, to first order
        lorentz = 1 / math.sqrt(1 - a.velocity ** 2)
        for k in range(a.fluxons):
            centre = (k + 0.5) * a.length / a.fluxons
            z = (self.x - centre) * lorentz
            phi += 4 * np.arctan(np.exp(z))
            phi_t += -2 * a.velocity * lorentz / np.cosh(z)
        return phi, phi_t

    def padded(self, phi: np.ndarray) -> np.ndarray:
        """phi with one ghost value at each end, from the boundary condition."""
        if self.a.boundary == "annular":
            return np.concatenate(([phi[-1] - self.twist], phi, [phi[0] + self.twist]))
        h = self.a.field
        return np.concatenate(([phi[0] - h * self.dx], phi, [phi[-1] + h * self.dx]))

    def laplacian(self, phi: np.ndarray) -> np.ndarray:
        p = self.padded(phi)
        return (p[2:] - 2 * p[1:-1] + p[:-2]) / self.dx ** 2

    def step(self, now: np.ndarray, before: np.ndarray) -> np.ndarray:
        a, dt = self.a, self.a.time_step
        damp = a.alpha * dt / 2
        force = self.laplacian(now) - np.sin(now) + a.gamma
        return (2 * now - (1 - damp) * before + dt * dt * force) / (1 + damp)

    def observables(self, t: float, phi: np.ndarray, v: np.ndarray) -> list[float]:
        a, dx = self.a, self.dx
        gradient = np.diff(self.padded(phi)[1:] if a.boundary == "annular" else phi) / dx
        e_kin = 0.5 * np.sum(v * v) * dx
        e_grad = 0.5 * np.sum(gradient * gradient) * dx
        e_pot = np.sum(1 - np.cos(phi)) * dx
        if a.boundary == "annular":
            winding = (np.sum(np.diff(phi)) + (phi[0] + self.twist - phi[-1])) / (2 * math.pi)
        else:
            winding = (phi[-1] - phi[0]) / (2 * math.pi)
        return [t, float(np.mean(v)), float(winding), e_kin, e_grad, e_pot, e_kin + e_grad + e_pot,
                a.alpha * np.sum(v * v) * dx, a.gamma * np.sum(v) * dx, float(np.mean(phi)), float(v[0]), float(v[-1])]


def simulate(args: argparse.Namespace) -> np.ndarray:
    """Run the simulation; the recorded rows (steps // record_every + 1 of them, 12 columns)."""
    junction = Junction(args)
    dt = args.time_step
    phi, phi_t = junction.initial()
    # first step by Taylor expansion: phi(-dt) from phi, phi_t and the equation itself
    accel = junction.laplacian(phi) - np.sin(phi) + args.gamma - args.alpha * phi_t
    before = phi - dt * phi_t + 0.5 * dt * dt * accel
    rows = [junction.observables(0.0, phi, phi_t)]
    report = max(1, args.steps // 10)
    for n in range(1, args.steps + 1):
        after = junction.step(phi, before)
        if n % args.record_every == 0:
            v = (after - before) / (2 * dt)
            rows.append(junction.observables(n * dt, phi, v))
            if not np.all(np.isfinite(rows[-1])):
                raise FloatingPointError(f"the solution became unstable at t = {n * dt:g}; "
                                         "use a smaller time step")
        before, phi = phi, after
        if n % report == 0 or n == args.steps:
            print(f"step {n}/{args.steps} ({100 * n // args.steps}%), t = {n * dt:g}", flush=True)
    return np.array(rows)


def header(args: argparse.Namespace) -> str:
    settings = ", ".join(f"{k}={v}" for k, v in sorted(vars(args).items()))
    return (f"Long Josephson junction (perturbed sine-Gordon), {settings}\n"
            "V = phi_t; E_* energy integrals; P_dissipated = alpha*int(phi_t^2); P_bias = gamma*int(phi_t)\n"
            + " ".join(COLUMNS))


def main(argv=None) -> int:
    args = parse_args(argv)  # exits with status 2 and the message on stderr
    print(f"LJJ simulation: L={args.length}, {args.points} points, {args.steps} steps of {args.time_step}, "
          f"boundary {args.boundary}", flush=True)
    try:
        with np.errstate(all="ignore"):
            rows = simulate(args)
    except FloatingPointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    np.savetxt(OUTPUT, rows, fmt="%.10e", header=header(args), comments="# ")
    print(f"wrote {OUTPUT}: {rows.shape[0]} rows x {rows.shape[1]} columns", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
